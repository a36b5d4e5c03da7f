"""A hubtune torchvision image classifier as a transformers model: copied as it is into an
exported folder (`hubtune export`), where `auto_map` in config.json points `AutoConfig` and
`AutoModelForImageClassification` at it, so transformers loads the folder with
`trust_remote_code=True` and no hubtune installed (torchvision is needed).

It must import nothing but torch, torchvision and transformers. The layers and parameter
names match `engine.tasks.image.TorchvisionClassifier` (`backbone.*` with the final
linear layer replaced by an identity, `head.*`), so the run's safetensors load as they are.
"""

from __future__ import annotations

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput


class HubtuneTorchvisionConfig(PretrainedConfig):
    model_type = "hubtune_torchvision"

    def __init__(self, arch: str = "resnet18", num_channels: int = 3, **kwargs) -> None:
        self.arch = arch
        self.num_channels = num_channels
        super().__init__(**kwargs)


class HubtuneForImageClassification(PreTrainedModel):
    """torchvision's `arch` without pretrained weights (the run's are loaded over it),
    its last linear layer swapped for the run's head."""

    config_class = HubtuneTorchvisionConfig
    base_model_prefix = "hubtune"
    main_input_name = "pixel_values"

    def __init__(self, config: HubtuneTorchvisionConfig) -> None:
        super().__init__(config)
        from torchvision.models import get_model

        self.backbone = get_model(config.arch, weights=None)
        last = [name for name, m in self.backbone.named_modules() if isinstance(m, nn.Linear)][-1]
        parent_name, _, child = last.rpartition(".")
        parent = self.backbone.get_submodule(parent_name) if parent_name else self.backbone
        features = getattr(parent, child).in_features
        setattr(parent, child, nn.Identity())
        self.head = nn.Linear(features, config.num_labels)
        self.post_init()

    def _init_weights(self, module) -> None:
        if module is self.head:
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, pixel_values=None, labels=None, return_dict=None,
                **kwargs) -> ImageClassifierOutput:
        logits = self.head(self.backbone(pixel_values))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return ImageClassifierOutput(loss=loss, logits=logits)
