"""Auth's settings stop the process with a message naming the bad variable."""

from __future__ import annotations

import pytest

from services.auth.main import Settings
from workpulse.settings import load


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        ({"access_token_private_key_file": "/no/such/key.pem"}, "ACCESS_TOKEN_PRIVATE_KEY_FILE"),
        ({"bcrypt_rounds": 3}, "BCRYPT_ROUNDS"),
        ({"access_token_ttl_seconds": 10}, "ACCESS_TOKEN_TTL_SECONDS"),
        ({"login_attempts_per_account": 0}, "LOGIN_ATTEMPTS_PER_ACCOUNT"),
    ],
)
def test_bad_values_name_their_variable(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str], override: dict[str, object], variable: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        load(Settings, **override)
    assert raised.value.code == 2
    assert variable in capsys.readouterr().err


def test_defaults_are_the_production_ones(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BCRYPT_ROUNDS")
    settings = load(Settings)
    assert settings.bcrypt_rounds == 12
    assert settings.access_token_ttl_seconds == 900
