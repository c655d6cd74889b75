"""One transaction at a time, with an unreachable database turned into `StoreUnavailable` in one place."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from layerscope.service.errors import StoreUnavailable


@contextlib.contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """Commit or roll back in one place; an unreachable database becomes StoreUnavailable."""
    try:
        with sessions.begin() as session:
            yield session
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise StoreUnavailable(f"The run database is unreachable: {first_line(exc)}") from exc
    except sa_exc.TimeoutError as exc:  # every pooled connection busy: the database is too slow to answer
        raise StoreUnavailable(f"The run database is unreachable: no connection free ({exc})") from exc
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(f"The run database connection was lost: {first_line(exc)}") from exc
        raise


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
