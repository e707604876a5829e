"""Files that hold credentials, by their well-known names: what a walk must not send to a model.

Inputs go to a model provider in pieces, so a directory walk (and an archive's members) skips
these files with the reason `secret`. A file named on the command line still loads, with a
warning: the user asked for it. An `--include` glob loads them from a walk when the glob itself
names secret files (`.env`, `*.pem`, `config/id_rsa`, `.aws/credentials`): it asks for them on
purpose, where a broad glob (`*`, `src/**`, `*.*`) only happens to match them.

Matching is on the file's name, lower-cased (`Server.KEY` is a key), with one compression suffix
taken off (`.env.gz` is a dotenv file). Globs with a `/` are matched against the file's folder
and name (`.aws/credentials`).
"""

from __future__ import annotations

import fnmatch
import re

# (what the files are, for the skip's detail, and their globs). One place: the README's list
# and the tests follow it.
SECRET_FILES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Environment files, where API keys and passwords usually live. Not `.envrc` (direnv's shell
    # script, usually committed, which loads a .env rather than holding one) and not the
    # committed templates in NOT_SECRET.
    ("a dotenv file", (".env", ".env.*")),
    # SSH private keys; their `.pub` halves are public (NOT_SECRET).
    ("an SSH private key", ("id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*")),
    # Private keys and key stores: PEM (keys, often bundled with certificates), PKCS#12, Java
    # keystores, PuTTY keys.
    ("a key file", ("*.pem", "*.key", "*.p12", "*.pfx", "*.keystore", "*.jks", "*.ppk")),
    # Tokens and passwords of package registries, git remotes, FTP/HTTP hosts, PostgreSQL.
    (
        "a credentials file",
        (".npmrc", ".pypirc", ".netrc", "_netrc", ".git-credentials", ".htpasswd", ".pgpass"),
    ),
    # Cloud and cluster credentials: AWS keys (not `.aws/config`: regions and profiles), the
    # Azure CLI's token caches, Google's application-default credentials and the OAuth client
    # files its quickstarts save as credentials.json / client_secret*.json, Docker registry
    # logins, kubeconfigs (cluster certificates and tokens).
    (
        "a cloud credentials file",
        (
            ".aws/credentials",
            ".azure/*",
            "application_default_credentials.json",
            "credentials.json",
            "client_secret*.json",
            ".docker/config.json",
            ".kube/config",
        ),
    ),
    # Secrets by convention: Rails' secrets.yml, helm-secrets, Home Assistant, ASP.NET user
    # secrets, Streamlit's secrets.toml.
    ("a secrets file", ("secrets.yaml", "secrets.yml", "secrets.json", "secrets.toml")),
)

# Names the globs above would catch that are not secret: public keys, and the templates of
# .env files that projects commit with placeholder values.
NOT_SECRET: tuple[str, ...] = ("*.pub", ".env.example", ".env.sample", ".env.template")

# A compressed copy is the same file (`.env.gz`): one such suffix is taken off the name.
_COMPRESSED = (".gz", ".bz2", ".xz")


def _compile(globs: tuple[str, ...]) -> str:
    # Globs without a folder match the name in any folder; the target is `folder/name`.
    parts = [
        fnmatch.translate(glob) if "/" in glob else r"(?:[^/]*/)?" + fnmatch.translate(glob)
        for glob in globs
    ]
    return "|".join(parts)


# One regex for all kinds (a named group each), so a walk of many files costs one match a file.
_KINDS = re.compile(
    "|".join(f"(?P<k{index}>{_compile(globs)})" for index, (_, globs) in enumerate(SECRET_FILES))
)
_NOT_SECRET = re.compile(_compile(NOT_SECRET))


def secret_kind(path: str) -> str | None:
    """What secret file `path` (`/`-separated; only its folder and name count) looks like, as
    `a dotenv file`, or None for an ordinary file."""
    target = "/".join(path.lower().rstrip("/").split("/")[-2:])
    for suffix in _COMPRESSED:
        if target.endswith(suffix):
            target = target[: -len(suffix)]
            break
    if not target or _NOT_SECRET.match(target):
        return None
    match = _KINDS.match(target)
    if match is None or match.lastgroup is None:
        return None
    return SECRET_FILES[int(match.lastgroup[1:])][0]


def names_secrets(glob: str) -> bool:
    """Whether an `--include` glob names secret files itself (`.env`, `*.pem`), read as a path,
    rather than matching them among others (`*`, `src/**`)."""
    if glob.startswith("!"):
        return False
    return secret_kind(glob.lstrip("/")) is not None
