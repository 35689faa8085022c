"""The Prometheus text format (0.0.4), as prometheus-client's ``generate_latest`` writes it,
with each sample's line remembered: after an append only the samples whose value moved are
formatted again (formatting is most of a scrape: ~7 us a sample in the library).

OpenMetrics (what a Prometheus server asks for) stays the library's; tests compare this
output with ``generate_latest`` byte for byte on the daemon's own registry.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric

_MAX_LINES = 50_000  # remembered sample lines; past it the memory starts over
_MAX_FAMILIES = 1000  # family names whose sample objects are remembered
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")
_TYPES = {"counter": ("_total", "counter"), "info": ("_info", "gauge"),
          "stateset": ("", "gauge"), "gaugehistogram": ("", "histogram"),
          "unknown": ("", "untyped")}  # fmt: skip


class TextExposition:
    """``render(registry)`` == ``generate_latest(registry)``, remembering sample lines, and the
    whole text of a family object the collector hands out again (its cached families)."""

    def __init__(self) -> None:
        self._lines: dict[tuple[Any, ...], str] = {}
        self._blocks: dict[int, tuple[Metric, str]] = {}  # id -> (the family, its text)
        # per family name, the sample objects of its last text: a family made again that
        # reuses most of them (the collector's usage rows) formats only the new ones
        self._samples: dict[str, dict[int, tuple[Any, Any]]] = {}
        self._one = _line_renderer()

    def render(self, registry: CollectorRegistry) -> bytes:
        out: list[str] = []
        if len(self._lines) > _MAX_LINES:
            self._lines.clear()
        # The last render's families stay referenced until this one ends: an id seen again is
        # the same object, not a new one at a freed address.
        before, self._blocks = self._blocks, {}
        for metric in registry.collect():
            hit = before.get(id(metric))
            if hit is not None and hit[0] is metric:
                text = hit[1]
            else:
                got = self._family(metric)
                if got is None:  # names the library escapes: its own output
                    self._blocks = {}
                    return generate_latest(registry)
                text = got
            self._blocks[id(metric)] = (metric, text)
            out.append(text)
        return "".join(out).encode("utf-8")

    def _family(self, metric: Metric) -> str | None:
        suffix, mtype = _TYPES.get(metric.type, ("", metric.type))
        mname = metric.name + suffix
        if not _plain_name(mname):
            return None
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out = [f"# HELP {mname} {doc}\n# TYPE {mname} {mtype}\n"]
        om: dict[str, list[str]] = {}
        om_names = {metric.name + sfx: sfx for sfx in _OM_SUFFIXES}
        before = self._samples.get(mname, {})
        seen: dict[int, tuple[Any, Any]] = {}
        # A family the collector made of rows (`chunks`: runs of its samples, a row's list
        # handed out again while the row is unchanged) is looked up a row at a time.
        chunks: list[list[Any]] | None = getattr(metric, "chunks", None)
        if chunks is None or sum(map(len, chunks)) != len(metric.samples):
            chunks = [metric.samples]
        by_row = len(chunks) > 1  # else per sample, as for any family
        for chunk in chunks:
            hit = before.get(id(chunk)) if by_row else None
            if hit is not None and hit[0] is chunk:
                seen[id(chunk)] = hit
                main, extra = hit[1]
            else:
                main, extra = self._lines_of(chunk, before, seen, om_names)
                if by_row:
                    seen[id(chunk)] = (chunk, (main, extra))
            out.append(main)
            for sfx, sample_lines in extra:
                om.setdefault(sfx, []).extend(sample_lines)
        if len(self._samples) > _MAX_FAMILIES:
            self._samples.clear()
        self._samples[mname] = seen
        for sfx, sample_lines in sorted(om.items()):
            out.append(f"# HELP {metric.name}{sfx} {doc}\n")
            out.append(f"# TYPE {metric.name}{sfx} gauge\n")
            out.extend(sample_lines)
        return "".join(out)

    def _lines_of(
        self,
        samples: list[Any],
        before: dict[int, tuple[Any, Any]],
        seen: dict[int, tuple[Any, Any]],
        om_names: dict[str, str],
    ) -> tuple[str, list[tuple[str, list[str]]]]:
        """The samples' lines (each remembered by the sample's identity, and by its content),
        and those of OpenMetrics suffixes apart, by suffix."""
        lines, one = self._lines, self._one
        main: list[str] = []
        om: dict[str, list[str]] = {}
        for s in samples:
            hit = before.get(id(s))
            if hit is not None and hit[0] is s:
                seen[id(s)] = hit
                line = hit[1]
            else:
                key = (s.name, tuple(s.labels.items()), s.value, s.timestamp)
                known = lines.get(key)
                line = lines[key] = one(s) if known is None else known
                seen[id(s)] = (s, line)
            sfx = om_names.get(s.name)
            if sfx is None:
                main.append(line)
            else:
                om.setdefault(sfx, []).append(line)
        return "".join(main), list(om.items())


def _plain_name(name: str) -> bool:
    return name.replace("_", "a").replace(":", "a").isalnum() and name.isascii()


def _line_renderer() -> Any:
    """The library's own sample_line (a closure inside generate_latest): one sample's line,
    got by rendering a registry that yields that sample alone."""

    class _One:
        sample: Any = None

        def collect(self) -> Any:
            m = Metric("x", "", "unknown")
            m.samples = [self.sample]
            yield m

    one = _One()

    def render(sample: Any) -> str:
        one.sample = sample
        text = generate_latest(one).decode("utf-8")
        return text.split("\n", 2)[2]

    return render
