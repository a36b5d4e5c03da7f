"""Using a trained image-classification run (engine.tasks.image, which loads its saved
model and reads its files): one image classified, and a folder's (or a table's) images
classified in batches and scored."""

from __future__ import annotations

from engine.core.errors import DataError
from engine.tasks.predictions import (
    PROBABILITY_COLUMNS_UP_TO,
    FilePredictions,
    Prediction,
    batches,
)


def classify_image(predictor, path: str) -> Prediction:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            pixels = predictor.transform(img.convert("RGB")).unsqueeze(0)
    except FileNotFoundError:
        raise DataError(f"Image {path} does not exist.") from None
    except (UnidentifiedImageError, OSError):
        raise DataError(f"{path} is not an image hubtune can read.") from None
    out = predictor.model(pixel_values=pixels.to(predictor.device))
    logits = out[1] if isinstance(out, tuple) else out.logits
    probs = logits[0].float().softmax(-1).tolist()
    scores = dict(zip(predictor.labels, probs, strict=True))
    best = max(scores, key=scores.get)
    return Prediction(path, best, scores[best], scores)


def image_probabilities(predictor, paths: list[str], batch_size: int, progress):
    import torch
    from PIL import Image, UnidentifiedImageError

    probs = torch.empty(len(paths), len(predictor.labels))
    with torch.inference_mode(), predictor.autocast():
        for chunk in batches(list(range(len(paths))), batch_size):
            pixels = []
            for i in chunk:
                try:
                    with Image.open(paths[i]) as img:
                        pixels.append(predictor.transform(img.convert("RGB")))
                except FileNotFoundError:
                    raise DataError(f"Image {paths[i]} does not exist.") from None
                except (UnidentifiedImageError, OSError):
                    raise DataError(f"{paths[i]} is not an image hubtune can read; remove it "
                                    "from the folder or the list.") from None
            out = predictor.model(pixel_values=torch.stack(pixels).to(predictor.device))
            logits = out[1] if isinstance(out, tuple) else out.logits
            probs[torch.tensor(chunk)] = torch.softmax(logits.float(), -1).cpu()
            if progress is not None:
                progress(len(chunk), len(paths))
    return probs


def predict_images(predictor, table, label_col: str | None, batch_size: int, progress
                   ) -> FilePredictions:
    """Every image of `table` (engine.tasks.image.image_table) classified; accuracy where
    `label_col` gives labels."""
    from engine.tasks.sequence_use import file_metric, readable

    probs = image_probabilities(predictor, list(table["path"]), batch_size, progress)
    out = table.copy()
    predicted, score = readable(probs, predictor.labels, "single_label")
    out["predicted"], out["score"] = predicted, score
    if len(predictor.labels) <= PROBABILITY_COLUMNS_UP_TO:
        for i, name in enumerate(predictor.labels):
            out[f"p_{name}"] = probs[:, i].tolist()
    metric = (file_metric("single_label", list(table[label_col]), predicted, probs)
              if label_col is not None else None)
    return FilePredictions(out, metric)
