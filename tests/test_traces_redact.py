"""The redaction pass: every secret shape is masked, in any surroundings, before any cut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccotel.traces.redact import MASK, clean, redact

SECRETS = [
    (
        "anthropic api key",
        "sk-ant-api03-Zx9yQ8wV7uT6sR5qP4oN3mL2kJ1iH0gF-AbCdEfGhIjKlMnOpQrStUvWxYz012345_6789",
    ),
    ("anthropic admin key", "sk-ant-admin01-abcdefghijklmnopqrstuvwxyz0123456789"),
    ("openai key", "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD"),
    ("aws access key id", "AKIAIOSFODNN7EXAMPLE"),
    ("aws session key id", "ASIAY34FZKBOKMUTVV7A"),
    ("github classic token", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("github oauth token", "gho_16C7e42F292c6912E7710c838347Ae178B4a"),
    (
        "github fine-grained token",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP",
    ),
    ("gitlab token", "glpat-xxxxxxxxxxxxxxxxxxxx"),
    ("slack token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("google api key", "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
    ("stripe key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    (
        "jwt",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
]


@pytest.mark.parametrize("name,secret", SECRETS, ids=[n for n, _ in SECRETS])
@pytest.mark.parametrize(
    "around", ["{}", "key={} end", "'{}'", '{{"k": "{}"}}', "export X={}\n", "x {}, y", "({})"]
)
def test_token_shapes_are_masked(name, secret, around):
    out = redact(around.format(secret))
    assert secret not in out
    assert MASK in out


@pytest.mark.parametrize(
    "text,masked,kept",
    [
        (
            "curl -H 'Authorization: Bearer abcdef0123456789xyz' https://x",
            "abcdef0123456789xyz",
            "Authorization: Bearer [REDACTED]",
        ),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA", "Basic [REDACTED]"),
        (
            "git clone https://alice:s3cr3tpass@github.com/a/b.git",
            "s3cr3tpass",
            "https://alice:[REDACTED]@github.com/a/b.git",
        ),
        (
            "postgres://app:Pa55w0rd!x@db:5432/prod",
            "Pa55w0rd!x",
            "postgres://app:[REDACTED]@db:5432/prod",
        ),
        ("DB_PASSWORD=hunter2hunter2", "hunter2hunter2", "DB_PASSWORD=[REDACTED]"),
        ('{"password": "correct horse"}', "correct", '"password": "[REDACTED]'),
        ("mysql --password s3cretvalue -u root", "s3cretvalue", "--password [REDACTED]"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI",
            "aws_secret_access_key = [REDACTED]",
        ),
        ("CLIENT_SECRET: 'abcdef123456'", "abcdef123456", "CLIENT_SECRET: '[REDACTED]"),
    ],
)
def test_assignments_urls_and_headers(text, masked, kept):
    out = redact(text)
    assert masked not in out
    assert kept in out


def test_private_key_blocks_are_masked_whole():
    body = "MIIEowIBAAKCAQEA1234567890abcdef\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldY\n"
    for kind in (
        "RSA PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "PRIVATE KEY",
        "EC PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
    ):
        text = f"before\n-----BEGIN {kind}-----\n{body}-----END {kind}-----\nafter"
        out = redact(text)
        assert "MIIEowIBAAKCAQEA" not in out and "QUJDREVGR0hJSktMTU5P" not in out
        assert out == f"before\n{MASK}\nafter"
    # cut off before its end: masked to the end of the text
    assert redact(f"x -----BEGIN RSA PRIVATE KEY-----\n{body}") == f"x {MASK}"


def test_ordinary_text_is_left_alone():
    for text in (
        "ls -la /home/u/proj",
        "git commit -m 'fix the parser'",
        "pytest -q tests/test_x.py",
        "The answer is 42.",
        "token count: 12",
    ):
        assert redact(text) == text


def test_a_secret_across_the_limit_is_masked_before_the_cut():
    secret = SECRETS[0][1]
    text = "a" * 90 + secret + " tail"
    out = clean(text, 100)
    assert out == "a" * 90 + MASK[:10] + "…[truncated]"
    assert secret[:10] not in out[90:]


def test_clean_limits():
    assert clean(None, 10) is None
    assert clean("short", 10) == "short"
    assert clean("x" * 11, 10) == "x" * 10 + "…[truncated]"
    assert clean("x" * 50_000, 0) == "x" * 50_000
    big = "y" * 10_000_000 + SECRETS[3][1]
    assert clean(big, 100) == "y" * 100 + "…[truncated]"


_filler = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    before=_filler,
    after=_filler,
    which=st.sampled_from(SECRETS),
    limit=st.sampled_from([0, 20, 80, 200]),
)
def test_property_no_secret_survives_in_any_surroundings(before, after, which, limit):
    secret = which[1]
    out = clean(f"{before} {secret} {after}", limit)
    assert secret not in out
    # not even a recognisable piece of it next to the mask
    assert secret[-12:] not in out
