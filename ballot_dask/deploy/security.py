"""TLS for the command line's cluster: temporary credentials for a cluster it starts, or the
files of a TLS scheduler it joins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import missing_extra

__all__ = ["client_security", "temporary_security"]


def temporary_security() -> Any:
    """A ``distributed.Security`` with fresh self-signed credentials held in memory, for a
    cluster this process starts (``--tls``); TLS is then required on every connection."""
    from distributed import Security

    try:
        return Security.temporary()
    except ImportError as exc:
        raise missing_extra("cryptography", "tls", "--tls") from exc


def client_security(
    ca_file: str | None = None, cert: str | None = None, key: str | None = None
) -> Any:
    """The ``Security`` that joins a TLS scheduler with the given files, or ``None`` when none
    is given (``distributed.comm.tls.*`` from Dask's configuration then apply, as for any
    ``Client``)."""
    from distributed import Security

    given = {"--tls-ca-file": ca_file, "--tls-cert": cert, "--tls-key": key}
    if not any(given.values()):
        return None
    absent = [name for name, value in given.items() if not value]
    if "--tls-ca-file" in absent or "--tls-cert" in absent:
        raise ValueError(
            "joining a TLS scheduler needs --tls-ca-file and --tls-cert (and --tls-key unless "
            f"the certificate file holds the key); missing: {', '.join(absent)}"
        )
    for name, value in given.items():
        if value and not Path(value).is_file():
            raise FileNotFoundError(f"{name} {value}: no such file")
    return Security(
        tls_ca_file=ca_file,
        tls_client_cert=cert,
        tls_client_key=key,
        require_encryption=True,
    )
