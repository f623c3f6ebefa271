"""Object storage (``s3://`` URLs, on AWS or any S3-compatible server): what to fetch, and fetching.

A URL names one object (``s3://bucket/key.csv``), every CSV and Parquet object under a prefix
(``s3://bucket/folder/``, a hive-partitioned dataset included: keys such as
``date=2024-01-01/part-0.parquet`` are kept, so partition values can be read from them) or the
objects a glob matches (``s3://bucket/2024-*/*.csv``). Objects are downloaded to local files
and ingested as files are, so every check, the quarantine and the ledger work the same.

The store is reached with pyarrow's S3 client, configured the way every AWS tool is: the
endpoint from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (http when it says http), the
region from ``AWS_REGION`` or ``AWS_DEFAULT_REGION``, and the credentials from
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN`` or else the SDK's own
chain (a profile, a web identity, an instance role). Credentials are never written anywhere and
never appear in a message: a URL that carries them is refused.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from pyarrow import fs as pafs

from steadycast.errors import InputFileError

SCHEME = "s3://"
# What a prefix or a glob picks up: the formats ingest reads. Other objects (a _SUCCESS marker,
# a README) are left alone, as are names starting with "_" or "." anywhere in the key, which
# dataset writers use for their own bookkeeping (Spark, pyarrow, this product's Parquet sink).
DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
GLOB_CHARS = re.compile(r"[*?\[]")
CHUNK = 1 << 20  # bytes copied at a time when downloading
CONNECT_TIMEOUT = 5.0  # seconds: an unreachable endpoint fails fast, with the retries the SDK makes
REQUEST_TIMEOUT = 120.0
# Signs of a request refused for its credentials (missing, wrong or expired), in pyarrow's errors.
_AUTH_ERRORS = (
    "ACCESS_DENIED",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "UNKNOWN (HTTP status 403)",
    "HTTP status 403",
)


@dataclass(frozen=True)
class ObjectURL:
    """An ``s3://`` URL split into its bucket and key (the key may be empty, a prefix or a glob)."""

    bucket: str
    key: str

    @property
    def path(self) -> str:
        """The ``bucket/key`` form pyarrow's filesystem takes."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    def url(self, key: str | None = None) -> str:
        """The URL of this object, or of another key in the same bucket."""
        return f"{SCHEME}{self.bucket}/{self.key if key is None else key}"


def is_object_url(text: str) -> bool:
    """Whether ``text`` names object storage rather than a local path."""
    return text.strip().lower().startswith(SCHEME)


def parse(url: str) -> ObjectURL:
    """Split an ``s3://bucket/key`` URL; refuse one that carries credentials or options."""
    text = url.strip()
    if not is_object_url(text):
        raise InputFileError(url, "not an object storage URL: expected s3://bucket/key")
    rest = text[len(SCHEME) :]
    bucket, _, key = rest.partition("/")
    if "@" in bucket:
        shown = SCHEME + "***@" + bucket.rpartition("@")[2] + ("/" + key if key else "")
        raise InputFileError(
            shown,
            "credentials in the URL are refused (they would be recorded with the batch); set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment instead",
        )
    if not bucket:
        raise InputFileError(url, "no bucket: expected s3://bucket/key")
    if "?" in bucket or "#" in bucket:
        raise InputFileError(url, "options in the URL are not read: set AWS_ENDPOINT_URL etc.")
    return ObjectURL(bucket=bucket, key=key)


def endpoint(env: Mapping[str, str] | None = None) -> str:
    """The endpoint the environment names (``AWS_ENDPOINT_URL_S3`` first), or "" for AWS."""
    env = os.environ if env is None else env
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""


def filesystem(url: str, env: Mapping[str, str] | None = None) -> pafs.S3FileSystem:
    """pyarrow's S3 client for ``url``, configured from the usual AWS environment variables."""
    env = os.environ if env is None else env
    options: dict[str, object] = {
        "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        "connect_timeout": CONNECT_TIMEOUT,
        "request_timeout": REQUEST_TIMEOUT,
    }
    where = endpoint(env)
    if where:
        parts = urlsplit(where if "://" in where else f"https://{where}")
        options["endpoint_override"] = parts.netloc
        options["scheme"] = parts.scheme or "https"
    key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key_id and secret:
        options["access_key"] = key_id
        options["secret_key"] = secret
        if env.get("AWS_SESSION_TOKEN"):
            options["session_token"] = env["AWS_SESSION_TOKEN"]
    elif not _other_credentials(env):
        raise InputFileError(
            url,
            "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) "
            "in the environment of the command",
        )
    return pafs.S3FileSystem(**options)  # type: ignore[arg-type]


def _other_credentials(env: Mapping[str, str]) -> bool:
    """Whether the SDK's own chain may find credentials: a profile, a web identity, a container
    or instance role. Only when none can exist is "no credentials" said before asking."""
    if any(
        env.get(name)
        for name in (
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_CONFIG_FILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        )
    ):
        return True
    home = Path(env.get("HOME") or "~").expanduser()
    if (home / ".aws" / "credentials").exists() or (home / ".aws" / "config").exists():
        return True
    # An EC2 instance role can only be found by asking the instance metadata service; a machine
    # that says it has none (the SDK's own switch) has no credentials left to find.
    return env.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true"


def scrub(message: str, env: Mapping[str, str] | None = None) -> str:
    """``message`` without any secret the environment holds (belt and braces: pyarrow's errors
    do not quote them, and nothing this module writes may)."""
    env = os.environ if env is None else env
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        value = env.get(name)
        if value and len(value) >= 4:
            message = message.replace(value, "***")
    return message


def problem(error: OSError, what: str) -> str:
    """A sentence for a failed request: unreachable, refused credentials, or pyarrow's own words."""
    text = scrub(str(error))
    where = endpoint() or "AWS S3"
    if "NETWORK_CONNECTION" in text or "curlCode" in text:
        return (
            f"cannot reach the object store at {where} ({what}); check AWS_ENDPOINT_URL and "
            "that the store is up"
        )
    if "NO_SUCH_BUCKET" in text or "NoSuchBucket" in text:
        return f"no such bucket at {where} ({what}); create it or correct the URL"
    if any(sign in text for sign in _AUTH_ERRORS):
        return (
            f"access refused by the object store at {where} ({what}); check the credentials "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and their permissions"
        )
    return f"{what} failed: {text}"


def is_data_key(key: str) -> bool:
    """Whether a listed key is a data file to ingest (not a marker, not a hidden file)."""
    parts = PurePosixPath(key).parts
    if not parts or any(p.startswith(("_", ".")) for p in parts):
        return False
    return parts[-1].lower().endswith(DATA_SUFFIXES)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob over keys as a regex: ``*`` and ``?`` stay within one ``/`` segment, ``**`` spans
    segments, ``[...]`` is a character class (the shell's rules, which fnmatch does not keep)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def list_objects(url: str, s3: pafs.S3FileSystem) -> list[str]:
    """The keys ``url`` names (sorted): one object, the data objects under a prefix, or the
    data objects a glob matches. Raises InputFileError when there are none, naming why."""
    target = parse(url)
    try:
        glob = GLOB_CHARS.search(target.key)
        if glob is None and target.key and not target.key.endswith("/"):
            info = s3.get_file_info(target.path)
            if info.type == pafs.FileType.File:
                return [target.key]
            if info.type == pafs.FileType.NotFound:
                _require_bucket(url, target.bucket, s3)
                raise InputFileError(
                    url, "no such object in the bucket; check the key (list it with `aws s3 ls`)"
                )
            target = ObjectURL(target.bucket, target.key + "/")
        base = target.key[: glob.start()] if glob else target.key
        base = base.rpartition("/")[0] if glob else base.rstrip("/")
        infos = s3.get_file_info(
            pafs.FileSelector(
                f"{target.bucket}/{base}".rstrip("/"), recursive=True, allow_not_found=True
            )
        )
        if not infos:
            _require_bucket(url, target.bucket, s3)
    except OSError as error:
        raise InputFileError(url, problem(error, "listing")) from None
    keys = [i.path.partition("/")[2] for i in infos if i.type == pafs.FileType.File]
    if glob:
        match = glob_regex(target.key)
        keys = [k for k in keys if match.match(k)]
        under = keys
    else:
        under = [k for k in keys if k.startswith(target.key)]
    chosen = sorted(k for k in under if is_data_key(k[len(base) :].lstrip("/")))
    if not chosen:
        kind = "the pattern matches" if glob else "under this prefix"
        found = (
            f" ({len(under)} other objects: names starting with _ or . and other formats are skipped)"
            if under
            else ""
        )
        raise InputFileError(url, f"no CSV or Parquet objects {kind}{found}")
    return chosen


def _require_bucket(url: str, bucket: str, s3: pafs.S3FileSystem) -> None:
    """Say "no such bucket" rather than "no such key" when it is the bucket that is missing."""
    if s3.get_file_info(bucket).type == pafs.FileType.NotFound:
        raise InputFileError(
            url,
            f"no such bucket {bucket!r} at {endpoint() or 'AWS S3'}; create it or correct the URL",
        )


def fetch(url: str, into: Path) -> list[tuple[str, Path]]:
    """Download every object ``url`` names into the folder ``into``, keeping each key's path
    below the bucket (so hive partition values stay readable); returns (object URL, local
    file) pairs sorted by URL."""
    target = parse(url)
    s3 = filesystem(url)
    keys = list_objects(url, s3)
    fetched: list[tuple[str, Path]] = []
    for key in keys:
        local = into / target.bucket / Path(*PurePosixPath(key).parts)
        if not local.resolve().is_relative_to(into.resolve()):
            raise InputFileError(target.url(key), "a key that leaves its folder is refused")
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            # compression=None: the bytes as stored (pyarrow would inflate a .gz on the way)
            source = s3.open_input_stream(f"{target.bucket}/{key}", compression=None)
            with source as src, local.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        except OSError as error:
            raise InputFileError(target.url(key), problem(error, "download")) from None
        fetched.append((target.url(key), local))
    return fetched
