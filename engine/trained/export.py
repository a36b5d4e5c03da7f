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

__all__ = ["LOADER_WORDS", "export_model", "model_card", "portable_config", "push_folder"]


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
