"""The host's pip configuration as one file for the image build, with what it needs from the host.

    python deploy/ci/pip_secret.py OUT_PIP_CONF

pip in the build stage must reach the index the way the host does (a mirror, a proxy, a CA that intercepts
TLS: on the CI machines every HTTPS connection is re-signed by a local CA), yet nothing of the host may stay in
the image. So the settings pip would use for `pip install` here are collected in pip's own order (global files,
the user's files, PIP_CONFIG_FILE, then PIP_* variables; the [install] section over [global]) into
OUT_PIP_CONF (mode 0600), which the build mounts as a secret for the install step only. `cert` is left out:
the CA bundle travels as its own secret, which the Dockerfile points PIP_CERT at.

On stdout, one line per thing the build needs from the host: `ca-bundle PATH`, then `mount PATH` for each
local folder or file a setting names (a file:// index, find-links, a constraints file), to be bind-mounted
read-only at the same path during the build (podman build --volume): mounts, like secrets, are not layers.
"""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

LEFT_OUT = frozenset({"cert", "config-file"})
DEFAULT_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def config_files() -> list[Path]:
    """pip's configuration files, lowest priority first (pip's `Configuration` order, on Linux)."""
    xdg = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files = [Path(folder) / "pip" / "pip.conf" for folder in reversed(xdg.split(os.pathsep)) if folder]
    files.append(Path("/etc/pip.conf"))
    home = Path.home()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    files += [home / ".pip" / "pip.conf", config_home / "pip" / "pip.conf"]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    return files


def host_settings() -> dict[str, str]:
    """Every pip setting in effect for `pip install` on this host, keys as pip spells them with dashes."""
    settings: dict[str, str] = {}
    for path in config_files():
        parser = configparser.RawConfigParser()
        if path.is_file() and parser.read(path):
            for section in ("global", "install"):
                if parser.has_section(section):
                    settings.update({key.replace("_", "-"): value for key, value in parser.items(section)})
    for name, value in os.environ.items():
        if name.startswith("PIP_"):
            settings[name[4:].lower().replace("_", "-")] = value
    return settings


def local_paths(value: str) -> list[Path]:
    """The host paths a setting's value names: absolute paths and file:// URLs. A file:// index ending in
    /simple links its files relative to the folder above, so that folder is what the build needs."""
    found = []
    for token in value.split():
        path = Path(urlparse(token).path) if token.startswith("file://") else Path(token)
        if not path.is_absolute() or not path.exists():
            continue
        found.append(path.parent if token.startswith("file://") and path.name == "simple" else path)
    return found


def ca_bundle(settings: dict[str, str]) -> Path:
    """The CA bundle the host trusts for the index: pip's own `cert`, else the system's."""
    for candidate in (settings.get("cert"), os.environ.get("SSL_CERT_FILE"), str(DEFAULT_BUNDLE)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise SystemExit(f"expected a CA bundle at pip's `cert`, SSL_CERT_FILE or {DEFAULT_BUNDLE}; found none")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    settings = host_settings()
    carried = {key: value.strip() for key, value in settings.items() if key not in LEFT_OUT}
    out = Path(argv[0])
    out.touch(mode=0o600)
    lines = (f"{key} = {value}".replace("\n", "\n    ") for key, value in sorted(carried.items()))
    out.write_text("[global]\n" + "".join(line + "\n" for line in lines))  # continuation lines stay indented
    print(f"ca-bundle {ca_bundle(settings)}")
    mounts = {path for value in carried.values() for path in local_paths(value)}
    for path in sorted(mounts):
        print(f"mount {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
