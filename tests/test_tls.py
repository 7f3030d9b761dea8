"""TLS: ``--tls`` gives the embedded cluster temporary credentials; ``--tls-ca-file``,
``--tls-cert`` and ``--tls-key`` join a TLS scheduler; a client without credentials is
refused."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from ballot_dask.cli import cli
from ballot_dask.clusters import connect

pytest.importorskip("cryptography")
distributed = pytest.importorskip("distributed")

N, K = 20_000, 4


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("tls") / "data.zarr"
    result = run("make-data", path, "--n", N, "--d", 2, "--k", K, "--chunks", 5_000, "-q")
    assert result.exit_code == 0, result.output
    return path


def test_fit_on_an_embedded_tls_cluster(data, tmp_path):
    out = tmp_path / "fit.zarr"
    result = run("fit", data, "--k", K, "-o", out, "--tls", "--n-workers", 2, "--quiet")
    assert result.exit_code == 0, result.output
    group = zarr.open_group(out, mode="r")
    assert group.attrs["cluster"] == {"protocol": "tls", "workers": 2}
    assert np.bincount(group["labels"][:], minlength=K).tolist() == [N // K] * K


# a client in its own process (as another user's would be), with the given credentials
STRANGER = """
import sys
import distributed
address, kind, ca = sys.argv[1:4]
security = {
    "none": distributed.Security(),
    "no certificate": distributed.Security(tls_ca_file=ca, require_encryption=True),
    "another CA": distributed.Security.temporary(),
}[kind]
try:
    distributed.Client(address, security=security, timeout=3)
except (OSError, TimeoutError, TypeError) as exc:
    print("refused", type(exc).__name__)
    sys.exit(0)
print("joined")
"""


def test_a_client_without_credentials_is_refused(tmp_path):
    import subprocess
    import sys

    with (
        dask.config.set({"distributed.comm.timeouts.connect": "3s"}),
        connect(cluster="local", tls=True, n_workers=1, threads_per_worker=1) as client,
    ):
        address = client.scheduler.address
        assert address.startswith("tls://")
        assert client.submit(sum, [1, 2]).result() == 3
        ca = tmp_path / "ca.pem"
        ca.write_text(client.security.tls_ca_file)
        attempts = [
            # no credentials at all: distributed will not even try
            ("none", address),
            # the cluster's CA but no client certificate: the scheduler asks for one
            ("no certificate", address),
            # a certificate the cluster's CA did not sign
            ("another CA", address),
            # plain TCP on the same port
            ("none", address.replace("tls://", "tcp://")),
        ]
        for kind, where in attempts:
            out = subprocess.run(
                [sys.executable, "-c", STRANGER, where, kind, str(ca)],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr[-2000:]
            assert out.stdout.startswith("refused"), (kind, where, out.stdout)
        # the cluster's own credentials still work
        assert client.submit(sum, [3, 4]).result() == 7


def _write_credentials(security, where: Path) -> dict[str, Path]:
    files = {
        "ca": (where / "ca.pem", security.tls_ca_file),
        "cert": (where / "cert.pem", security.tls_client_cert),
        "key": (where / "key.pem", security.tls_client_key),
    }
    for path, text in files.values():
        path.write_text(text)
        path.chmod(0o600)
    return {name: path for name, (path, _) in files.items()}


def test_join_a_tls_scheduler_with_credential_files(data, tmp_path):
    security = distributed.Security.temporary()
    files = _write_credentials(security, tmp_path)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, security=security, dashboard_address=":0"
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        out = tmp_path / "fit.zarr"
        result = run("fit", data, "--k", K, "-o", out, "--scheduler", address, "--quiet",
                     "--tls-ca-file", files["ca"], "--tls-cert", files["cert"],
                     "--tls-key", files["key"])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert zarr.open_group(out, mode="r").attrs["cluster"]["protocol"] == "tls"

        # without the credentials: one line, within the connect timeout, nothing written
        with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):
            result = run("fit", data, "--k", K, "-o", tmp_path / "no.zarr", "--scheduler",
                         address)  # fmt: skip
        assert result.exit_code == 1
        assert result.stderr == (
            f"error: cannot reach the Dask scheduler at {address}: it requires TLS; pass "
            "--tls-ca-file, --tls-cert and --tls-key (or set distributed.comm.tls.*)\n"
        )
        assert not (tmp_path / "no.zarr").exists()


TLS_ERRORS = {
    "half": (["--scheduler", "tls://127.0.0.1:1", "--tls-cert", "{cert}"], "--tls-ca-file"),
    "missing file": (
        ["--scheduler", "tls://127.0.0.1:1", "--tls-ca-file", "{cert}", "--tls-cert", "/no"],
        "--tls-cert /no: no such file",
    ),
    "files without scheduler": (
        ["--tls-ca-file", "{cert}", "--tls-cert", "{cert}"],
        "join a TLS scheduler named by --scheduler",
    ),
    "tls with scheduler": (
        ["--scheduler", "tls://127.0.0.1:1", "--tls"],
        "--tls applies to a cluster this command starts",
    ),
    "tls on kubernetes": (
        ["--cluster", "kubernetes", "--tls"],
        "--tls applies to --cluster local or --cluster slurm, not to --cluster kubernetes",
    ),
}


@pytest.mark.parametrize("case", list(TLS_ERRORS))
def test_tls_option_errors_are_one_line(case, data, tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    args, message = TLS_ERRORS[case]
    args = [a.format(cert=cert) for a in args]
    result = run("fit", data, "--k", K, "-o", tmp_path / "o.zarr", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "o.zarr").exists()
