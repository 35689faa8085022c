"""Masking secrets in captured content, then truncating it.

Runs on every string ccotel would send when content capture is on: prompts,
tool arguments and results, command lines, file paths. Patterns err on the
side of masking. The text is cut to a margin past the limit first (so a huge
file costs little), masked, then cut to the limit, so a secret that straddles
the limit is masked whole before the cut, never left half visible.
"""

from __future__ import annotations

import re

MASK = "[REDACTED]"
_MARGIN = 1024

# Whole-match secrets: the match is replaced by MASK.
_TOKENS = [
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*\Z)",
    r"sk-ant-[A-Za-z0-9_\-]{8,}",  # Anthropic (api03, admin01, oat01 ...)
    r"\bsk-(?:proj-|svcacct-|live-|test-)?[A-Za-z0-9_\-]{20,}",  # OpenAI and look-alikes
    r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}\b",  # AWS access key ids
    r"gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{20,}",
    r"glpat-[A-Za-z0-9_\-]{20,}",  # GitLab
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
    r"AIza[0-9A-Za-z_\-]{30,}",  # Google API keys
    r"[rs]k_(?:live|test)_[0-9A-Za-z]{16,}",  # Stripe
    r"\bnpm_[A-Za-z0-9]{30,}",
    r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWTs
]
_TOKEN_RE = re.compile("|".join(f"(?:{p})" for p in _TOKENS), re.DOTALL)

# Keep the prefix (group 1), mask what follows.
_PREFIXED = [
    # Authorization: Bearer x / Basic x / token x
    r"(?i)(\b(?:bearer|basic|token)\s+)[A-Za-z0-9\-._~+/]{8,}=*",
    r"(?i)(\bauthorization\s*[:=]\s*[\"']?)(?!\[REDACTED\])[^\s\"',;]{8,}",
    # user:password@ in URLs
    r"(?i)(\b[a-z][a-z0-9+.\-]*://[^/\s:@\"']+:)[^@\s/\"']+(?=@)",
    # KEY=value, "key": "value" assignments
    r"(?i)(\b[A-Za-z0-9_\-]*(?:password|passwd|passphrase|secret|token|api[_\-]?key|apikey|access[_\-]?key|private[_\-]?key|client[_\-]?secret|credentials?)[A-Za-z0-9_\-]*[\"']?\s*[=:]\s*[\"']?)(?!\[REDACTED\])[^\s\"',;}]{6,}",
    # --password value, --api-key value
    r"(?i)(--?[A-Za-z0-9\-]*(?:password|passwd|passphrase|secret|token|api-?key|access-?key)[A-Za-z0-9\-]*[\s=]+[\"']?)(?!\[REDACTED\])[^\s\"']{4,}",
    r"(?i)(\baws_secret_access_key\s*[=:]\s*[\"']?)[A-Za-z0-9/+=]{20,}",
]
_PREFIXED_RE = [re.compile(p) for p in _PREFIXED]


def redact(text: str) -> str:
    """Mask secrets in text."""
    if not text:
        return text
    text = _TOKEN_RE.sub(MASK, text)
    for rx in _PREFIXED_RE:
        text = rx.sub(lambda m: m.group(1) + MASK, text)
    return text


def clean(text: str | None, max_chars: int) -> str | None:
    """Redact and truncate to max_chars (0: no limit); None stays None."""
    if text is None:
        return None
    cut = len(text) > max_chars > 0
    if cut:
        text = text[: max_chars + _MARGIN]
    text = redact(text)
    if max_chars > 0 and len(text) > max_chars:
        text = text[:max_chars] + "…[truncated]"
    elif cut:
        text += "…[truncated]"
    return text
