"""A TUF fetcher whose bundle downloads resume: bytes received so far are kept, and the next try
asks the server for the rest (an HTTP range request). TUF still checks the length and hash of the
whole file, so a partial file that does not belong to the target fails that check and is dropped.

Metadata is fetched whole (it is small and must be fresh); only ``/targets/bundles/`` resume.
Target names carry their hash (consistent snapshots), so a partial file can only continue the
same content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface

__all__ = ["ResumingFetcher"]

CHUNK = 1 << 20


class ResumingFetcher(FetcherInterface):
    def __init__(self, partial_dir: Path, timeout: float = 30.0, chunk: int = CHUNK,
                 on_chunk: Callable[[int], None] | None = None) -> None:
        import tuf
        import urllib3

        self.partial_dir = Path(partial_dir)
        self.timeout = timeout
        self.pool = urllib3.PoolManager(headers={"User-Agent": f"edgeship-agent python-tuf/{tuf.__version__}"})
        self.resumed_bytes = 0
        self.chunk = chunk
        self.on_chunk = on_chunk  # called with the bytes of a bundle received so far

    def _part(self, url: str) -> Path | None:
        if "/targets/bundles/" not in url:
            return None
        return self.partial_dir / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".part")

    def _request(self, url: str, start: int) -> Any:
        import urllib3

        try:
            return self.pool.request("GET", url, headers={"Range": f"bytes={start}-"} if start else {},
                                     preload_content=False, retries=False, timeout=urllib3.Timeout(self.timeout))
        except urllib3.exceptions.NewConnectionError as e:  # a subclass of urllib3's TimeoutError: refused, no route, no name
            why = str(e).split("new connection: ", 1)[-1] if "new connection: " in str(e) else str(e)
            raise exceptions.DownloadError(f"could not connect to {url}: {why[:200]}") from None
        except urllib3.exceptions.TimeoutError as e:
            raise exceptions.SlowRetrievalError(f"no answer from {url} within {self.timeout:g} s") from e

    def _fetch(self, url: str) -> Iterator[bytes]:
        part = self._part(url)
        have = part.stat().st_size if part is not None and part.is_file() else 0
        r = self._request(url, have)
        if have and r.status != 206:  # the server does not resume (or the partial is whole): start over
            r.close()  # not back to the pool with its body unread
            assert part is not None
            part.unlink(missing_ok=True)
            have = 0
            r = self._request(url, 0)
        if r.status >= 400:
            r.close()
            raise exceptions.DownloadHTTPError(f"HTTP error occurred with status {r.status}", r.status)
        return self._chunks(r, part, have)

    def _chunks(self, r: Any, part: Path | None, have: int) -> Iterator[bytes]:
        import urllib3

        try:
            if part is None:
                yield from r.stream(CHUNK)
                return
            part.parent.mkdir(parents=True, exist_ok=True)
            if have:
                self.resumed_bytes += have
                with open(part, "rb") as fh:
                    while chunk := fh.read(CHUNK):
                        yield chunk
            got = have
            with open(part, "ab" if have else "wb") as out:
                for chunk in r.stream(self.chunk):
                    out.write(chunk)
                    out.flush()
                    got += len(chunk)
                    if self.on_chunk is not None:
                        self.on_chunk(got)
                    yield chunk
        except urllib3.exceptions.TimeoutError as e:
            raise exceptions.SlowRetrievalError from e
        finally:
            r.release_conn()
