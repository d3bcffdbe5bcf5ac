"""Dask, imported only when asked for, and the client the estimators use."""
from __future__ import annotations

import sys

from ..core.checks import check_scalar
from ..exceptions import BackendUnavailableError, ParameterError

#: What to install for training on a cluster.
INSTALL_HINT = 'pip install "fastsae-audio[dist]"'


def require():
    """``(dask, dask.array, distributed)``, or BackendUnavailableError naming the install."""
    try:
        import dask
        import dask.array as da
        import distributed
    except ImportError as exc:
        raise BackendUnavailableError(
            f"fastsae.distributed needs Dask's distributed scheduler, which is not installed "
            f"({exc}); install it with: {INSTALL_HINT}") from None
    return dask, da, distributed


def is_dask_collection(x) -> bool:
    """Whether ``x`` is a dask collection (False, without importing Dask, when Dask is not loaded)."""
    dask = sys.modules.get("dask")
    if dask is None:
        return False
    return bool(dask.is_dask_collection(x))


def connect(address=None, *, timeout=10.0, **local_cluster_kw):
    """A :class:`dask.distributed.Client` for the scheduler at ``address``.

    Parameters
    ----------
    address : str, a Dask cluster object, or None
        ``"tcp://host:8786"``, a cluster (``LocalCluster``, ...), or None for a
        new local cluster on this machine (its options in ``local_cluster_kw``,
        e.g. ``n_workers=2, threads_per_worker=1``; the dashboard is off unless
        ``dashboard_address`` is given).
    timeout : float > 0
        Seconds to wait for the scheduler.

    Returns
    -------
    dask.distributed.Client
        Also made the default client (what the estimators use).

    Raises
    ------
    BackendUnavailableError
        Dask is not installed, or the scheduler did not answer in ``timeout`` seconds.
    """
    _, _, distributed = require()
    timeout = check_scalar(timeout, "timeout", low=0.0, low_open=True)
    if address is not None and local_cluster_kw:
        raise ParameterError("local cluster options (" + ", ".join(sorted(local_cluster_kw))
                             + f") need address=None; got address={address!r}")
    if address is None:
        local_cluster_kw.setdefault("dashboard_address", None)
    elif not isinstance(address, (str, distributed.deploy.Cluster)):
        raise ParameterError("address must be a scheduler address such as 'tcp://host:8786', "
                             f"a Dask cluster object or None; got {address!r}")
    if isinstance(address, str) and (address.split("://")[0] if "://" in address
                                     else "tcp") in ("tcp", "tls"):   # before a Client exists
        try:
            distributed.comm.get_address_host_port(address)
        except ValueError as exc:                        # e.g. no port in the address
            raise ParameterError(f"address {address!r} is not a scheduler address such as "
                                 f"'tcp://host:8786': {exc}") from None
    try:
        return distributed.Client(address, timeout=timeout, **local_cluster_kw)
    except (OSError, TimeoutError) as exc:
        where = "a local cluster" if address is None else f"the Dask scheduler at {address!r}"
        raise BackendUnavailableError(f"could not reach {where} within {timeout:g} s: {exc}") \
            from None


def get_client(client):
    _, _, distributed = require()
    if client is None:
        try:
            return distributed.default_client()
        except ValueError:
            raise ParameterError(
                "no Dask client: connect first with fastsae.distributed.connect(address) "
                "(or dask.distributed.Client(...)), or pass client=") from None
    if not isinstance(client, distributed.Client):
        raise ParameterError(f"client must be a dask.distributed.Client or None; got {client!r}")
    return client
