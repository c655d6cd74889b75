"""Model formats that are not a Keras 3 archive, recognised by their signature so the refusal can say what
the file is and how to turn it into a `.keras` archive (which is all the scanner will read)."""

from __future__ import annotations

from pathlib import Path

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

H5_ADVICE = (
    "Convert it once, in a trusted environment: "
    "python -c \"import keras; keras.models.load_model('{path}', compile=False).save('{target}')\" "
    "(a file Keras 3 cannot read loads with tf_keras.models.load_model instead), then use {target}."
)
SAVEDMODEL_ADVICE = (
    "A SavedModel keeps a graph, not the Keras layers to look inside. Save the Keras model itself from the "
    "code that built it: model.save('{target}'); for a folder written by TF 2.x tf.keras, "
    "python -c \"import tf_keras; tf_keras.models.load_model('{path}').save('{target}')\" where tf_keras is installed."
)


def legacy_format(path: Path, named: bool = True) -> str | None:
    """Why `path` is not a Keras 3 archive and how to convert it, or None when it is not a known other format.

    `named=False` leaves the path out: the server stores an upload under its own path, which would mean
    nothing to the caller (and is not theirs to know).
    """
    subject = f"{str(path)!r}, " if named else ""
    source = str(path) if named else ("saved_model" if path.is_dir() else "model.h5")
    target = f"{Path(source).with_suffix('').name or 'model'}.keras"
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return (
                f"Expected a .keras archive; received {subject}a TensorFlow SavedModel folder. "
                + SAVEDMODEL_ADVICE.format(path=source, target=target)
            )
        return f"Expected a .keras archive; received {subject}a folder."
    try:
        with path.open("rb") as f:
            head = f.read(len(HDF5_SIGNATURE))
    except OSError:
        return None  # the caller reports the unreadable file as it already does
    if head == HDF5_SIGNATURE:
        return f"Expected a .keras archive; received {subject}a legacy HDF5 (.h5) Keras model. " + H5_ADVICE.format(
            path=source, target=target
        )
    return None
