"""A server on a PostgreSQL database of encoding SQL_ASCII (initdb's default under the C locale) starts, warns in
one line what that encoding means and how to change it, stores non-ASCII text exactly and refuses clearly what
would not fit: it used to crash-loop in SQLAlchemy's version check ("cannot use a string pattern on a bytes-like
object"). Model names are ASCII by the repository's rule and layer names by TensorFlow's, so the text that
reaches the database from a caller is a run id."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
import sqlalchemy as sa

from layerscope.client import Client, InvalidArgumentError
from tests.conftest import start_server
from tests.support import models
from tests.support.postgres import sql_ascii_database

URL = os.environ.get("LAYERSCOPE_TEST_DATABASE_URL")
LAYERS = ("couche_été", "層_dense", "выход")


@pytest.fixture()
def sql_ascii_url() -> Iterator[str]:
    """Skipped locally without PostgreSQL; under CI=true its absence is a failure, never a quiet skip."""
    if not URL:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the database encoding test: set LAYERSCOPE_TEST_DATABASE_URL")
        pytest.skip("needs LAYERSCOPE_TEST_DATABASE_URL (a real PostgreSQL)")
    with sql_ascii_database(URL) as url:
        yield url


def non_ascii_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    x = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(8, activation="relu", name=LAYERS[0])(x)
    hidden = keras.layers.Dense(4, activation="relu", name=LAYERS[1])(hidden)
    return keras.Model(x, keras.layers.Dense(2, name=LAYERS[2])(hidden), name="non_ascii")


def stored_run_ids(url: str) -> list[tuple[str, int]]:
    """What the database holds, read by another UTF-8 client: each run id and its length in bytes."""
    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://"), connect_args={"client_encoding": "utf8"}
    )
    try:
        with engine.connect() as conn:
            return [(row[0], row[1]) for row in conn.execute(sa.text("SELECT run_id, octet_length(run_id) FROM run"))]
    finally:
        engine.dispose()


def put(repository: Path, name: str, model: keras.Model, tmp: Path) -> None:
    folder = repository / name / "1"
    folder.mkdir(parents=True)
    models.save(model, tmp).rename(folder / "model.keras")


def test_a_sql_ascii_database_serves_and_stores_non_ascii_text_exactly_or_refuses_it_clearly(
    tmp_path: Path, sql_ascii_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    put(tmp_path / "repository", "digits", models.dead_relu_model(), tmp_path)
    put(tmp_path / "repository", "accents", non_ascii_model(), tmp_path)
    caplog.set_level(logging.INFO)
    run_id = "exécution-数字-1"
    server = start_server(tmp_path, database_url=sql_ascii_url)  # migrating is the first query: it used to crash here
    try:
        with Client(server.target, timeout=60) as c:
            assert c.health() == "SERVING" and c.health("layerscope.model.digits") == "SERVING"
            cap = c.capture("digits", np.ones((4, 4), "float32"), run_id=run_id)
            assert [r.run_id for r in c.runs("digits")] == [run_id]  # the writer stored it in the database
            assert c.get_run(run_id).run_id == run_id
            with pytest.raises(InvalidArgumentError, match=r"at most 128 bytes in UTF-8 \(.*SQL_ASCII"):
                c.capture("digits", np.ones((4, 4), "float32"), run_id="é" * 100)  # 100 characters, 200 bytes
            # Keras loads a model whose layer names are not ASCII, but TensorFlow runs no call of it: refused at
            # load, by name, where every call used to fail as an internal error.
            assert c.health("layerscope.model.accents") == "NOT_SERVING"
            with pytest.raises(InvalidArgumentError, match=r"layer names TensorFlow accepts .* Dense 'couche_été'"):
                c.load_model("accents")
    finally:
        server.stop()
    assert cap.run_id == run_id
    assert stored_run_ids(sql_ascii_url) == [(run_id, len(run_id.encode()))]  # UTF-8 bytes: any UTF-8 client reads it
    warnings = [r.getMessage() for r in caplog.records if "has encoding SQL_ASCII" in r.getMessage()]
    assert len(warnings) == 1 and "ENCODING 'UTF8' TEMPLATE template0" in warnings[0]
