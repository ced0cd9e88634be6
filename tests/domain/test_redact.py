"""One redaction function for every message (issue 10, hole 10)."""

from __future__ import annotations

import logging

import pytest

from domain.redact import redact, redact_url, secret_values, url_has_credentials


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "could not connect to postgres://u:pw@db.internal:5432/app",
            "could not connect to postgres://***@db.internal:5432/app",
        ),
        (
            "TRIBUTARY_AUTHORITY='postgresql://svc:s3cr%40t@h/x'",
            "TRIBUTARY_AUTHORITY='postgresql://***@h/x'",
        ),
        ("clone https://ghp_abc@github.com/o/r failed", "clone https://***@github.com/o/r failed"),
        ("fetch ssh://git@host/x.git", "fetch ssh://git@host/x.git"),
        ("GET https://h/r.git?access_token=abc123&x=1", "GET https://h/r.git?access_token=***&x=1"),
        ("https://gitlab/r?private_token=glp", "https://gitlab/r?private_token=***"),
        (
            "s3://b/k?X-Amz-Signature=deadbeef&X-Amz-Credential=AK",
            "s3://b/k?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("dsn host=h password=hunter22 user=u", "dsn host=h password=*** user=u"),
        ("header Authorization: Bearer eyJhbGciOi.x.y", "header Authorization: ***"),
        ("sent bearer abcdefghijklmnop", "sent bearer ***"),
        ("token ghp_0123456789abcdefghijKLMN in the log", "token *** in the log"),
        (
            "nothing secret here: spec.lambdaMemory=512",
            "nothing secret here: spec.lambdaMemory=512",
        ),
    ],
)
def test_redact_by_shape(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_known_secret_values_wherever_they_appear() -> None:
    env = {
        "GITHUB_TOKEN": "canary-github-0001",
        "AWS_SECRET_ACCESS_KEY": "canary-aws-0002",
        "MY_SERVICE_PASSWORD": "canary-pw-0003",
        "TRIBUTARY_AUTHORITY": "postgresql://u:canary%2Fdb-0004@h/x",
        "AWS_ACCESS_KEY_ID": "AKIAIDNOTSECRET",
        "AWS_DEFAULT_REGION": "us-east-1",
        "HOME": "/root",
    }
    secrets = secret_values(env)
    assert set(secrets) == {
        "canary-github-0001",
        "canary-aws-0002",
        "canary-pw-0003",
        "canary%2Fdb-0004",
        "canary/db-0004",
    }
    text = "boom: canary-github-0001 / canary-aws-0002 / canary/db-0004 canary-pw-0003 us-east-1"
    assert redact(text, secrets) == "boom: *** / *** / *** *** us-east-1"


def test_short_values_are_not_treated_as_secrets() -> None:
    # The sandbox's AWS key is "testing": redacting every "testing" would garble
    # messages without protecting anything.
    assert redact("testing the sandbox", secret_values({"AWS_SECRET_ACCESS_KEY": "testing"})) == (
        "testing the sandbox"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/o/r.git?access_token=abc", True),
        ("https://github.com/o/r.git?ref=main&token=abc", True),
        ("https://gitlab.com/o/r.git?private_token=abc", True),
        ("https://user:pw@github.com/o/r.git", True),
        ("https://ghp_token@github.com/o/r", True),
        ("ssh://git@host/x", False),
        ("https://github.com/o/r?tokens_used=3", False),
        ("file:///srv/r.git", False),
    ],
)
def test_url_has_credentials(url: str, expected: bool) -> None:
    assert url_has_credentials(url) is expected


def test_redact_url_drops_userinfo_and_token_parameters() -> None:
    assert (
        redact_url("https://u:p@h:8443/r.git?access_token=t&a=1")
        == "https://h:8443/r.git?access_token=***&a=1"
    )


def test_the_worker_log_filter_redacts_messages_arguments_and_tracebacks() -> None:
    from worker import RedactingFilter

    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactingFilter(["canary-github-0001"]))
    log = logging.getLogger("test-redacting-filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("connecting to %s", "postgresql://u:pw@h/x")
        try:
            raise RuntimeError("token canary-github-0001 refused")
        except RuntimeError:
            log.exception("activity failed")
    finally:
        log.removeHandler(handler)
    assert records[0] == "connecting to postgresql://***@h/x"
    assert "canary-github-0001" not in records[1]
    assert "RuntimeError: token *** refused" in records[1]


def test_failures_enter_history_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from temporalio.api.failure.v1 import Failure
    from temporalio.converter import DefaultPayloadConverter

    from client.settings import RedactingFailureConverter

    monkeypatch.setenv("GITHUB_TOKEN", "canary-github-0001")
    converter = RedactingFailureConverter()
    try:
        try:
            raise OSError("postgresql://u:pw@db/x refused")
        except OSError as cause:
            raise RuntimeError("push with canary-github-0001 failed") from cause
    except RuntimeError as e:
        failure = Failure()
        converter.to_failure(e, DefaultPayloadConverter(), failure)
    assert failure.message == "push with *** failed"
    assert failure.cause.message == "postgresql://***@db/x refused"
    assert "canary-github-0001" not in failure.SerializeToString().decode(errors="replace")


def test_cli_errors_are_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from starter.output import Output

    monkeypatch.setenv("CONFIGHUB_TOKEN", "canary-confighub-0002")
    Output(as_json=True).error("Unexpected", "HTTP 401 for token canary-confighub-0002")
    Output(as_json=False).progress("cloning https://x:y@h/r.git")
    shown = capsys.readouterr()
    assert "canary-confighub-0002" not in shown.out + shown.err
    assert '"message": "HTTP 401 for token ***"' in shown.out
    assert "cloning https://***@h/r.git" in shown.err
