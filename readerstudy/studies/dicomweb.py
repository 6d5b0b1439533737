"""A thin DICOMweb client for the case import: find a series (QIDO-RS) and retrieve it (WADO-RS) into a folder.

Manifest rows may name a series by ``study_instance_uid`` + ``series_instance_uid`` instead of a folder. The import
retrieves each such series once into a fresh staging folder (the caller owns it and removes it whatever happens) and
then checks and de-identifies that folder exactly like a folder row: this module only downloads. Every failure is a
reason for a row error (:meth:`SeriesFetcher.fetch` returns it), never a traceback: no server configured, the server
unreachable or refusing us, an unknown study or series, a series of the wrong modality, too many instances, a
retrieve that broke off or came back short, or instances of another series.

The server comes from the settings ``DICOMWEB_URL`` (unset: UID rows are refused), ``DICOMWEB_USERNAME`` /
``DICOMWEB_PASSWORD`` (HTTP basic) or ``DICOMWEB_TOKEN`` (a bearer token), ``DICOMWEB_TIMEOUT`` (seconds per
connect and per read).
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from django.conf import settings

from imaging.uids import instance_problem, uid_problem

# A CT series of a liver study has a few hundred slices; a hostile or wrong answer must not fill the disk.
MAX_INSTANCES = 5000
_TAG_MODALITY = "00080060"
_TAG_N_INSTANCES = "00201209"  # NumberOfSeriesRelatedInstances
_TAG_SOP_INSTANCE_UID = "00080018"


@dataclass(frozen=True)
class DicomwebConfig:
    url: str
    username: str = ""
    password: str = ""
    token: str = ""
    timeout_s: float = 30.0

    @classmethod
    def from_settings(cls) -> DicomwebConfig | None:
        url = getattr(settings, "DICOMWEB_URL", "") or ""
        if not url:
            return None
        return cls(
            url=url.rstrip("/"),
            username=getattr(settings, "DICOMWEB_USERNAME", "") or "",
            password=getattr(settings, "DICOMWEB_PASSWORD", "") or "",
            token=getattr(settings, "DICOMWEB_TOKEN", "") or "",
            timeout_s=float(getattr(settings, "DICOMWEB_TIMEOUT", 30)),
        )


class FetchError(Exception):
    """Why a series could not be retrieved (a row error's reason)."""


class ServerError(FetchError):
    """The server as a whole failed (unreachable, refused us): later rows get the same reason without a new try."""


NOT_CONFIGURED = "no DICOMweb server configured (set DICOMWEB_URL to import series by UID)"


class SeriesFetcher:
    """Retrieves series by UID into ``staging/series-<n>/`` (file names are generated), each at most once."""

    def __init__(self, staging: Path, config: DicomwebConfig | None) -> None:
        self.staging, self.config = staging, config
        self._done: dict[tuple[str, str], tuple[Path | None, str]] = {}
        self._server_problem = "" if config is not None else NOT_CONFIGURED
        self._client: Any = None

    @classmethod
    def from_settings(cls, staging: Path) -> SeriesFetcher:
        return cls(staging, DicomwebConfig.from_settings())

    def fetch(self, study_uid: str, series_uid: str, modalities: tuple[str, ...]) -> tuple[Path | None, str]:
        """The folder holding the series, or None and the reason why it could not be retrieved."""
        key = (study_uid, series_uid)
        if key not in self._done:
            self._done[key] = self._fetch(study_uid, series_uid, modalities)
        return self._done[key]

    def _fetch(self, study_uid: str, series_uid: str, modalities: tuple[str, ...]) -> tuple[Path | None, str]:
        if self._server_problem:
            return None, self._server_problem
        for uid in (study_uid, series_uid):
            problem = uid_problem(uid)
            if problem is not None:  # the manifest check refuses these first; this door stays shut on its own too
                return None, f"not a DICOM UID: {problem}"
        folder = self.staging / f"series-{len(self._done) + 1}"
        try:
            expected = self._find(study_uid, series_uid, modalities)
            self._retrieve(study_uid, series_uid, folder, expected)
        except ServerError as exc:
            self._server_problem = str(exc)
            shutil.rmtree(folder, ignore_errors=True)
            return None, str(exc)
        except FetchError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            return None, str(exc)
        return folder, ""

    # --- the network --------------------------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is None:
            assert self.config is not None
            self._client = connect(self.config)
        return self._client

    def _server(self, exc: Exception) -> FetchError:
        assert self.config is not None
        return server_error(self.config, exc)

    def _find(self, study_uid: str, series_uid: str, modalities: tuple[str, ...]) -> set[str]:
        """QIDO-RS: the series exists in the study with an allowed modality; the SOP instance UIDs it holds."""
        client = self._connect()
        try:
            found = client.search_for_series(
                study_uid,
                search_filters={"SeriesInstanceUID": series_uid},
                fields=["Modality", "NumberOfSeriesRelatedInstances"],
            )
        except (requests.RequestException, ValueError) as exc:
            raise self._server(exc) from None
        if not found:
            raise FetchError(f"the DICOMweb server has no series {series_uid} in study {study_uid}")
        modality = _value(found[0], _TAG_MODALITY)
        if modality not in modalities:
            expected = " or ".join(modalities)
            raise FetchError(f"series {series_uid} holds modality {modality or 'none'!r}, expected {expected}")
        n_instances = _value(found[0], _TAG_N_INSTANCES)
        if n_instances.isdigit() and int(n_instances) > MAX_INSTANCES:
            raise FetchError(f"series {series_uid} has {n_instances} instances, more than {MAX_INSTANCES}")
        try:
            instances = client.search_for_instances(
                study_uid, series_uid, fields=["SOPInstanceUID"], limit=MAX_INSTANCES + 1
            )
        except (requests.RequestException, ValueError) as exc:
            raise self._server(exc) from None
        uids = {_value(i, _TAG_SOP_INSTANCE_UID) for i in instances} - {""}
        if len(instances) > MAX_INSTANCES:
            raise FetchError(f"series {series_uid} has more than {MAX_INSTANCES} instances")
        if not uids:
            raise FetchError(f"series {series_uid} lists no instances on the DICOMweb server")
        return uids

    def _retrieve(self, study_uid: str, series_uid: str, folder: Path, expected: set[str]) -> None:
        """WADO-RS: every instance of the series, in its stored transfer syntax, written as 00001.dcm..."""
        folder.mkdir(parents=True)
        got: set[str] = set()
        try:
            for n, ds in enumerate(self._instances(study_uid, series_uid), start=1):
                problem = instance_problem(ds, study_uid, series_uid)
                if problem is None and str(ds.SOPInstanceUID) not in expected:
                    problem = f"instance {ds.SOPInstanceUID} came back but was not listed for series {series_uid}"
                if problem is not None:
                    raise FetchError(f"retrieve of series {series_uid}: {problem}")
                if n > len(expected):
                    raise FetchError(f"retrieve of series {series_uid}: more instances came back than listed")
                ds.save_as(folder / f"{n:05d}.dcm", enforce_file_format=True)
                got.add(str(ds.SOPInstanceUID))
        except FetchError:
            raise
        except OSError as exc:
            if not isinstance(exc, requests.RequestException):  # the staging disk (full, not writable)
                reason = exc.strerror or exc
                raise FetchError(f"cannot write series {series_uid} to the staging folder ({reason})") from None
            raise FetchError(
                f"retrieve of series {series_uid} broke off after {len(got)} of {len(expected)} instances "
                f"({self._server(exc)})"
            ) from None
        except Exception as exc:  # a cut or garbled part fails inside pydicom in many ways (TypeError, KeyError...)
            raise FetchError(
                f"retrieve of series {series_uid} broke off after {len(got)} of {len(expected)} instances "
                f"(an instance cannot be read: {type(exc).__name__})"
            ) from None
        if got != expected:
            raise FetchError(
                f"retrieve of series {series_uid} came back with {len(got)} of {len(expected)} instances "
                "(the response was cut short or the series changed meanwhile); nothing was imported"
            )

    def _instances(self, study_uid: str, series_uid: str) -> Iterator[Any]:
        # "*": the stored transfer syntax, so the server neither transcodes nor refuses what it cannot transcode.
        return iter(self._connect().iter_series(study_uid, series_uid, media_types=(("application/dicom", "*"),)))


def _value(item: dict, tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0]) if isinstance(values, list) else ""


def connect(config: DicomwebConfig) -> Any:
    """A DICOMweb client for the configured server: its own session (no proxy or .netrc credentials from the
    environment: the settings say it), the configured credentials, and no retries."""
    from dicomweb_client.api import DICOMwebClient  # requests + retrying: only DICOMweb work needs them

    session = requests.Session()
    session.trust_env = False
    if config.token:
        session.headers["Authorization"] = f"Bearer {config.token}"
    elif config.username:
        session.auth = (config.username, config.password)
    try:
        client = DICOMwebClient(config.url, session=session, timeout=config.timeout_s)
    except ValueError as exc:
        raise ServerError(f"DICOMWEB_URL {config.url!r} is not a usable URL ({exc})") from None
    client.set_http_retry_params(retry=False)  # a row error now beats minutes of back-off
    return client


def server_error(config: DicomwebConfig, exc: Exception) -> FetchError:
    """The reason a request failed, as the reader of an error list needs it (ServerError: the whole server)."""
    url = config.url
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return ServerError(
                f"the DICOMweb server {url} refused access (HTTP {status}); "
                "check DICOMWEB_USERNAME/DICOMWEB_PASSWORD or DICOMWEB_TOKEN"
            )
        return FetchError(f"the DICOMweb server {url} answered HTTP {status} {exc.response.reason}")
    if isinstance(exc, requests.Timeout):
        return ServerError(f"the DICOMweb server {url} did not answer within {config.timeout_s:g} s")
    if isinstance(exc, requests.ConnectionError):
        return ServerError(f"cannot reach the DICOMweb server {url} ({type(exc).__name__})")
    return FetchError(f"the DICOMweb server {url} sent an answer that cannot be read ({type(exc).__name__})")


def store_instances(config: DicomwebConfig | None, blobs: list[bytes]) -> int:
    """STOW-RS: store DICOM instances (e.g. DL segmentations) on the configured server, in one request; returns
    how many were sent. Raises FetchError (ServerError where the server as a whole failed) with the reason."""
    if config is None:
        raise ServerError(NOT_CONFIGURED.replace("to import series by UID", "to push segmentations"))
    import pydicom

    datasets = [pydicom.dcmread(io.BytesIO(blob)) for blob in blobs]
    try:
        connect(config).store_instances(datasets=datasets)
    except (requests.RequestException, OSError) as exc:
        raise server_error(config, exc) from None
    return len(datasets)
