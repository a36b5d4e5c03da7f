"""`hubtune export`: a trained run's model as a folder that loads without hubtune, with a
model card that holds no local path or user name.

Which form the folder takes is the run's task adapter's (`Task.export`); the writers
of each form are in engine.modeling.export. Never imports the store.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.modeling.export import LOADER_WORDS, portable_config, push_folder
from engine.modeling.export import model_card as _card

__all__ = ["LOADER_WORDS", "add_onnx", "export_model", "model_card", "portable_config",
           "push_folder", "validation_texts"]


def export_model(model_dir: Path, target: Path, *, config: dict, summary: dict,
                 run_name: str, force: bool = False,
                 protected: Path | None = None) -> tuple[Path, str]:
    """Write a run's final model to `target` with a model card; returns (folder, how to load).

    Every form loads without hubtune: heads built on transformers' task classes are
    copied as they are; a sequence head on BERT's pooler becomes
    `BertForSequenceClassification`; other sequence heads (mean or first-token pooling,
    MLP heads, other backbones) ship `modeling_hubtune.py` with an `auto_map`, loaded with
    `trust_remote_code=True`; a torchvision image run ships `modeling_hubtune_vision.py`
    likewise; an embedding run becomes a sentence-transformers folder. The folder is built
    beside `target` and moved in (engine.core.outputs.fill_folder): a non-empty `target`
    is refused unless `force`, and nothing inside `protected` (hubtune's data folder) is
    written. No file carries a local path (`base_dir`, data files, a local base model) or
    a user name.
    """
    import shutil

    from engine.core.outputs import fill_folder
    from engine.modeling.export import scrub_folder
    from engine.tasks import task_for

    model_dir = Path(model_dir)
    head = json.loads((model_dir / "hubtune_head.json").read_text(encoding="utf-8"))
    task = task_for(head["task"])
    loaders: list[str] = []

    def fill(folder: Path) -> None:
        loader = task.export(model_dir, folder, head, config)
        if loader is None:
            for item in model_dir.iterdir():
                if item.is_file():
                    shutil.copy2(item, folder / item.name)
            loader = task.loader
        scrub_folder(folder)
        (folder / "README.md").write_text(
            _card(head, config, summary, run_name, loader, task.pipeline_tag),
            encoding="utf-8")
        loaders.append(loader)

    folder = fill_folder(target, fill, force=force, protected=protected)
    return folder, loaders[0]


def model_card(head: dict, config: dict, summary: dict, run_name: str, loader: str) -> str:
    """engine.modeling.export.model_card with the pipeline tag of the head's task."""
    from engine.tasks import task_for

    return _card(head, config, summary, run_name, loader,
                 task_for(head["task"]).pipeline_tag)


def add_onnx(folder: Path, loader: str, config: dict, *, quantize: bool = False):
    """model.onnx (and with `quantize` model.int8.onnx) beside an export, checked on the
    run's validation texts, and that check added to the folder's model card; returns
    engine.modeling.onnx_export's report. Code in the folder runs only where the run's
    model.trust_remote_code was true."""
    from engine.modeling.onnx_export import export_onnx

    model = config.get("model") if isinstance(config, dict) else None
    trusted = isinstance(model, dict) and model.get("trust_remote_code") is True
    report = export_onnx(folder, loader, texts=validation_texts(config), quantize=quantize,
                         trust_remote_code=trusted)
    card = folder / "README.md"
    if card.is_file():
        card.write_text(card.read_text(encoding="utf-8").rstrip("\n") + "\n\n"
                        + report.card_section(), encoding="utf-8")
    return report


def validation_texts(config: dict, limit: int = 64) -> list[str] | None:
    """Up to `limit` texts of the run's validation (else training) file, to check the ONNX
    model on; None (made-up inputs) when the data is not a local file of texts."""
    from engine.core.config import RunConfig
    from engine.core.errors import HubtuneError
    from engine.data.reader import read_columns

    try:
        cfg = RunConfig.from_dict(config)
        path = cfg.resolve(cfg.data.validation or cfg.data.train)
        rows = read_columns(path, [cfg.data.text_column], encoding=cfg.data.encoding)
    except (HubtuneError, OSError, ValueError, TypeError):
        return None
    return [row[0] for row in rows[:limit] if row and row[0]] or None
