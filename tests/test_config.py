from pathlib import Path

import pytest

from recorder.config import (
    DEFAULT_STORE_URL,
    ENVIRONMENT_URLS,
    Secret,
    SigningSettings,
    config_path_from,
    load_config,
)
from recorder.errors import ConfigError
from recorder.signing import generate_key, write_new_key

MINIMAL = '[studio]\naccounts = ["100000", "0042"]\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recorder.toml"
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, MINIMAL), env={})
    assert settings.studio.accounts == ("100000", "0042")  # strings, leading zeros kept
    assert settings.studio.url == ENVIRONMENT_URLS["production"]
    assert settings.studio.token_url == "https://auth.clearstreet.io/oauth/token"
    assert settings.studio.audience == "https://api.clearstreet.io"
    assert settings.store.url == DEFAULT_STORE_URL
    r = settings.recorder
    assert (r.trading_day_timezone, r.liveness_timeout_s, r.subscribe_timeout_s) == (
        "America/New_York", 60, 10,
    )  # fmt: skip
    assert (r.backoff_initial_s, r.backoff_max_s, r.batch_max_rows) == (1, 60, 1000)
    assert (r.batch_max_delay_ms, r.queue_max_frames) == (20, 100_000)
    assert settings.metrics.address == ("127.0.0.1", 9464)


def test_full_config_and_env_overrides(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cr3t\n")
    path = write(
        tmp_path,
        """
[studio]
environment = "sandbox"
client_id = "from-file"
client_secret_file = "secret"
accounts = ["1"]
[store]
url = "postgresql+psycopg://postgres@127.0.0.1/test"
[recorder]
trading_day_timezone = "Europe/London"
liveness_timeout_s = 5
batch_max_rows = 10
[metrics]
listen = ""
""",
    )
    settings = load_config(path, env={"STUDIO_CLIENT_ID": "from-env"})
    assert settings.studio.url == ENVIRONMENT_URLS["sandbox"]
    assert settings.require_credentials() == ("from-env", Secret("s3cr3t"))
    assert settings.recorder.liveness_timeout_s == 5.0
    assert settings.metrics.address is None


def test_secret_env_wins_and_credentials_directory_is_used(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "studio-secret").write_text("from-systemd")
    path = write(tmp_path, MINIMAL + 'client_id = "c"\nclient_secret_file = "studio-secret"\n')
    settings = load_config(path, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert settings.require_credentials()[1].reveal() == "from-systemd"
    settings = load_config(path, env={"CREDENTIALS_DIRECTORY": str(creds),
                                      "STUDIO_CLIENT_SECRET": "from-env"})  # fmt: skip
    assert settings.require_credentials()[1].reveal() == "from-env"


def test_secret_never_shows_in_repr(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'client_id = "c"\n')
    settings = load_config(path, env={"STUDIO_CLIENT_SECRET": "hunter2-very-secret"})
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.studio.client_secret)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL + "bogus = 1\n", r"\[studio\] bogus"),
        (
            MINIMAL + "[recorder]\nlivenes_timeout_s = 3\n",
            r"unknown key \[recorder\] livenes_timeout_s",
        ),
        (MINIMAL + "[nope]\n", r"unknown section \[nope\]"),
        ("[studio]\n", r"\[studio\] accounts is missing"),
        ("[studio]\naccounts = []\n", r"\[studio\] accounts must be a non-empty"),
        (
            "[studio]\naccounts = [100000]\n",
            r"\[studio\] accounts entries must be non-empty strings",
        ),
        ('[studio]\naccounts = ["1", "1"]\n', r"lists an account twice"),
        (
            MINIMAL + '[recorder]\nliveness_timeout_s = "60"\n',
            r"liveness_timeout_s must be a number",
        ),
        (MINIMAL + "[recorder]\nbatch_max_rows = 1.5\n", r"batch_max_rows must be an integer"),
        (MINIMAL + "[recorder]\nbatch_max_rows = 0\n", r"batch_max_rows must be at least 1"),
        (MINIMAL + "[recorder]\nliveness_timeout_s = nan\n", r"liveness_timeout_s must be finite"),
        (MINIMAL + '[recorder]\ntrading_day_timezone = "Mars/Base"\n', r"not an IANA time zone"),
        (MINIMAL + "[recorder]\nbackoff_initial_s = 10\nbackoff_max_s = 5\n", r"backoff_max_s"),
        (MINIMAL + '[metrics]\nlisten = "nope"\n', r"\[metrics\] listen must be HOST:PORT"),
        (MINIMAL + '[store]\nurl = "::not a url"\n', r"\[store\] url is not a SQLAlchemy"),
        (MINIMAL + 'url = "ws://example.com/ws"\n', r"ws:// for a non-loopback host"),
        (MINIMAL + 'url = "http://127.0.0.1/ws"\n', r"must be a wss:// URL"),
        (
            MINIMAL + 'token_url = "http://auth.example.com/t"\n',
            r"\[studio\] token_url uses http://",
        ),
        (MINIMAL + 'environment = "staging"\n', r"environment must be"),
        (MINIMAL + 'environment = "sandbox"\nurl = "wss://x/ws"\n', r"cannot be combined"),
        (MINIMAL + 'ca_file = "missing.pem"\n', r"ca_file does not name a readable file"),
        (MINIMAL + "[signing]\nkeyfile = 'k'\n", r"unknown key \[signing\] keyfile"),
        (
            MINIMAL + "[signing]\ncheckpoint_interval_s = 0.5\n",
            r"\[signing\] checkpoint_interval_s must be at least 1 \(got 0.5\)",
        ),
        (MINIMAL + "[signing]\npublic_keys = 'k.pub'\n", r"public_keys must be an array"),
        (MINIMAL + "[signing]\npublic_keys = [1]\n", r"public_keys entries must be a string"),
        (
            MINIMAL + "[signing]\npublic_keys = ['missing.pub']\n",
            r"\[signing\] public_keys entry 1: cannot read .*missing\.pub: No such file",
        ),
        (
            MINIMAL + "[signing]\npublic_keys = ['n+00000000+AQ==']\n",
            r"public_keys entry 1: verifier key n\+00000000 does not hold an Ed25519 key",
        ),
        ("[studio\n", r"not valid TOML"),
        ("studio = 3\n", r"\[studio\] must be a table"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, env={})
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "[::1]"])
def test_loopback_plain_urls_are_allowed(tmp_path: Path, host: str) -> None:
    path = write(tmp_path, MINIMAL + f'url = "ws://{host}:8765/ws"\n'
                 f'token_url = "http://{host}:8766/oauth/token"\n')  # fmt: skip
    settings = load_config(path, env={})
    assert settings.studio.url == f"ws://{host}:8765/ws"
    assert settings.studio.token_url == f"http://{host}:8766/oauth/token"


@pytest.mark.parametrize(
    "host", ["example.com", "10.0.0.1", "[2001:db8::1]", "localhost.example.com", "0.0.0.0"]
)
@pytest.mark.parametrize(
    ("key", "scheme", "secure"), [("url", "ws", "wss"), ("token_url", "http", "https")]
)
def test_plain_urls_are_refused_for_other_hosts(
    tmp_path: Path, host: str, key: str, scheme: str, secure: str
) -> None:
    path = write(tmp_path, MINIMAL + f'{key} = "{scheme}://{host}:8765/x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == (
        f"{path}: [studio] {key} uses {scheme}:// for a non-loopback host; "
        f"use {secure}:// ({scheme}://{host}:8765/x)"
    )


def test_missing_credentials_are_reported_only_when_needed(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, MINIMAL), env={})
    with pytest.raises(ConfigError, match="client_id is not set"):
        settings.require_credentials()
    settings = load_config(write(tmp_path, MINIMAL + 'client_id = "c"\n'), env={})
    with pytest.raises(ConfigError, match="no client secret"):
        settings.require_credentials()


def test_secret_file_is_read_only_when_credentials_are_needed(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'client_id = "c"\nclient_secret_file = "missing"\n')
    settings = load_config(path, env={})  # loading never reads the secret file
    assert settings.studio.client_secret_file == tmp_path / "missing"
    with pytest.raises(ConfigError) as info:
        settings.require_credentials()
    assert str(info.value) == (
        f"{path}: [studio] client_secret_file cannot be read "
        f"({tmp_path / 'missing'}: No such file or directory)"
    )
    (tmp_path / "missing").write_text("  \n")
    with pytest.raises(ConfigError, match=r"\[studio\] client_secret_file is empty"):
        settings.require_credentials()
    (tmp_path / "missing").write_text("late-secret\n")
    assert settings.require_credentials()[1].reveal() == "late-secret"
    assert "late-secret" not in repr(settings)


def test_missing_file_and_path_resolution(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "missing.toml", env={})
    assert config_path_from("a.toml", {"STUDIO_RECORDER_CONFIG": "b.toml"}) == Path("a.toml")
    assert config_path_from(None, {"STUDIO_RECORDER_CONFIG": "b.toml"}) == Path("b.toml")
    with pytest.raises(ConfigError, match="--config"):
        config_path_from(None, {})


# --- [signing] ------------------------------------------------------------------------------


def test_signing_defaults_to_off(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, MINIMAL), env={})
    assert settings.signing == SigningSettings()
    assert settings.signing.checkpoint_interval_s == 60
    assert settings.require_signer() is None


def test_signing_table_resolves_paths_and_parses_public_keys(tmp_path: Path) -> None:
    verifier_key = write_new_key(tmp_path / "signing-key")
    (tmp_path / "signing-key").chmod(0o600)
    other_key = generate_key("other")[1]
    (tmp_path / "keys").mkdir()
    write_new_key(tmp_path / "keys" / "archive")
    path = write(
        tmp_path,
        MINIMAL
        + "[signing]\n"
        + 'key_file = "signing-key"\n'
        + "checkpoint_interval_s = 5\n"
        + 'checkpoint_dir = "checkpoints"\n'
        + f'public_keys = ["{other_key}", "keys/archive.pub", "{tmp_path}/signing-key.pub"]\n',
    )
    settings = load_config(path, env={})
    signing = settings.signing
    assert signing.key_file == tmp_path / "signing-key"  # not read yet
    assert signing.checkpoint_interval_s == 5.0
    assert signing.checkpoint_dir == tmp_path / "checkpoints"
    assert [key.text for key in signing.public_keys] == [
        other_key,
        (tmp_path / "keys" / "archive.pub").read_text().strip(),
        verifier_key,
    ]
    signer = settings.require_signer()
    assert signer is not None
    assert signer.verifier_key == verifier_key
    assert settings.warnings == ()


def test_relative_key_file_is_a_credential_under_systemd(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    verifier_key = write_new_key(credentials / "studio-signing-key")
    (credentials / "studio-signing-key").chmod(0o440)  # systemd's mode: not our business
    path = write(tmp_path, MINIMAL + '[signing]\nkey_file = "studio-signing-key"\n')
    settings = load_config(path, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.signing.key_file == credentials / "studio-signing-key"
    signer = settings.require_signer()
    assert signer is not None
    assert signer.verifier_key == verifier_key
    assert settings.warnings == ()
    # Without $CREDENTIALS_DIRECTORY the same name is next to the config file.
    settings = load_config(path, env={})
    assert settings.signing.key_file == tmp_path / "studio-signing-key"


def test_require_signer_names_the_key_and_the_file_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[signing]\nkey_file = "signing-key"\n')
    settings = load_config(path, env={})  # loading never reads the key file
    key_file = tmp_path / "signing-key"
    with pytest.raises(ConfigError) as info:
        settings.require_signer()
    assert str(info.value) == (
        f"{path}: [signing] key_file: cannot read {key_file}: No such file or directory "
        "(create one with `studio-recorder keygen`)"
    )
    private_text, verifier_key = generate_key()
    seed = private_text.split("+", 4)[4]
    key_file.write_text(verifier_key + "\n")  # the public half by mistake
    with pytest.raises(ConfigError) as info:
        settings.require_signer()
    assert str(info.value) == (
        f"{path}: [signing] key_file: {key_file}: "
        "this is a verifier (public) key, not the private key"
    )
    key_file.write_text(private_text.replace(seed, seed[:20]) + "\n")  # damaged
    with pytest.raises(ConfigError) as info:
        settings.require_signer()
    assert str(info.value).startswith(f"{path}: [signing] key_file: {key_file}: private key ")
    assert seed[:20] not in str(info.value)
    assert "\n" not in str(info.value)


def test_a_key_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    write_new_key(tmp_path / "signing-key")
    path = write(tmp_path, MINIMAL + '[signing]\nkey_file = "signing-key"\n')
    path.chmod(0o644)  # names no client secret: nothing to say about the config itself
    (tmp_path / "signing-key").chmod(0o640)
    assert load_config(path, env={}).warnings == (
        f"{tmp_path / 'signing-key'} ([signing] key_file) is readable by group/others "
        "(mode 0640): restrict it with chmod 600",
    )
    (tmp_path / "signing-key").chmod(0o600)
    assert load_config(path, env={}).warnings == ()


def test_the_signing_key_never_shows_in_settings_or_signer_reprs(tmp_path: Path) -> None:
    write_new_key(tmp_path / "signing-key")
    seed = (tmp_path / "signing-key").read_text().strip().split("+", 4)[4]
    path = write(tmp_path, MINIMAL + '[signing]\nkey_file = "signing-key"\n')
    settings = load_config(path, env={})
    signer = settings.require_signer()
    for shown in (repr(settings), str(settings), repr(signer), str(signer)):
        assert seed not in shown


def test_a_relative_sqlite_path_is_the_config_files_neighbour(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "recorder.toml"
    config.parent.mkdir()
    document = '[studio]\naccounts = ["1"]\nclient_id = "c"\n[store]\nurl = "{}"\n'
    config.write_text(document.format("sqlite:///data/store.db"))
    assert load_config(config, {}).store.url == f"sqlite:///{tmp_path}/etc/data/store.db"
    config.write_text(document.format("sqlite:////var/lib/x/store.db"))  # absolute: as written
    assert load_config(config, {}).store.url == "sqlite:////var/lib/x/store.db"
    config.write_text('[studio]\naccounts = ["1"]\nclient_id = "c"\n')  # default: working dir
    assert load_config(config, {}).store.url == "sqlite:///studio-events.db"
