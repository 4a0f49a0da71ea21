"""Tiny random-weight models for every ``concepts`` backend, saved as ``save_pretrained`` folders.

They are built from ``transformers`` config classes with a handful of small layers and a tokenizer
written here (lower-case letters, no merges), so the real loading and inference path of the
``concepts`` source runs without downloading anything: in tests, in ``benchmarks/bench_concepts.py``
and to try the command line::

    python -m semcontrib.segmentation.concepts_tiny sam3 /tmp/tiny-sam3
    semcontrib analyze PHOTOS --out C --regions concepts:eye,ear,rest \\
        --region-opt backend=sam3 --region-opt model=/tmp/tiny-sam3

Their masks are meaningless (random weights); with the default score thresholds they usually find
nothing, so everything goes to ``rest`` (lower ``score_threshold`` to see instances).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

LETTERS = "abcdefghijklmnopqrstuvwxyz"
#: the tiny CLIP vocabulary's start and end (= padding) ids; 0 is ``!`` as in CLIP, since OWLv2 takes a
#: query whose first id is 0 for padding
CLIP_BOS, CLIP_EOS = 53, 54
CLIP_TEXT_IDS = {"vocab_size": 64, "bos_token_id": CLIP_BOS, "eos_token_id": CLIP_EOS, "pad_token_id": CLIP_EOS}


def clip_tokenizer() -> Any:
    """A byte-level BPE tokenizer in CLIP's format: ``!`` (0), the letters alone and with ``</w>``, then
    the start (:data:`CLIP_BOS`) and end/padding (:data:`CLIP_EOS`) tokens (64 ids in the models, 55 used)."""
    from transformers import CLIPTokenizer

    vocab = {"!": 0}
    for suffix in ("", "</w>"):
        for c in LETTERS:
            vocab[c + suffix] = len(vocab)
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = CLIP_BOS, CLIP_EOS
    return CLIPTokenizer(vocab=vocab, merges=[])


def bert_tokenizer() -> Any:
    """A WordPiece tokenizer in BERT's format: the special tokens, ``.``, letters and ``##`` letters."""
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *LETTERS, *("##" + c for c in LETTERS)]
    return BertTokenizer(vocab={w: i for i, w in enumerate(words)})


def _save(model: Any, processor: Any, folder: str | os.PathLike[str]) -> Path:
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def save_tiny_sam3(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """``Sam3Model`` (ViT of 2 layers, width 32, 112x112 input, 5 queries) + ``Sam3Processor``."""
    import torch
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor
    from transformers.models.sam3.configuration_sam3 import (
        Sam3DETRDecoderConfig,
        Sam3DETREncoderConfig,
        Sam3GeometryEncoderConfig,
        Sam3MaskDecoderConfig,
        Sam3VisionConfig,
        Sam3ViTConfig,
    )

    torch.manual_seed(seed)
    small: dict[str, Any] = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    backbone = Sam3ViTConfig(num_hidden_layers=2, image_size=112, patch_size=14, window_size=8,
                             global_attn_indexes=[0, 1], **small)
    config = Sam3Config(
        vision_config=Sam3VisionConfig(backbone_config=backbone, fpn_hidden_size=32, scale_factors=[2.0, 1.0]),
        text_config={"hidden_size": 32, "intermediate_size": 64, "projection_dim": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 4, "max_position_embeddings": 32, "hidden_act": "gelu",
                     **CLIP_TEXT_IDS},
        geometry_encoder_config=Sam3GeometryEncoderConfig(num_layers=1, **small),
        detr_encoder_config=Sam3DETREncoderConfig(num_layers=1, **small),
        detr_decoder_config=Sam3DETRDecoderConfig(num_layers=1, num_queries=5, **small),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=32, num_upsampling_stages=2))
    processor = Sam3Processor(image_processor=Sam3ImageProcessor(size={"height": 112, "width": 112},
                                                                 mask_size={"height": 32, "width": 32}),
                              tokenizer=clip_tokenizer())
    return _save(Sam3Model(config).eval(), processor, folder)


def save_tiny_grounding_dino(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """``GroundingDinoForObjectDetection`` (Swin of width 8, BERT of width 8, 4 queries, inputs of 96-128
    pixels: at 64 a square image leaves a 1x1 feature map that group norm refuses) + ``GroundingDinoProcessor``."""
    import torch
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(seed)
    tokenizer = bert_tokenizer()
    swin_options: dict[str, Any] = {"window_size": 7, "embed_dim": 8, "depths": [1, 1, 1, 1],
                                    "num_heads": [1, 1, 1, 1], "image_size": 98, "out_indices": [2, 3, 4]}
    swin = SwinConfig(**swin_options)
    text = {"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 8, "max_position_embeddings": 32, "vocab_size": len(tokenizer)}
    config = GroundingDinoConfig(
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=16, decoder_ffn_dim=16, num_queries=4, num_feature_levels=4, encoder_n_points=2,
        decoder_n_points=2, backbone_config=swin, max_text_len=16, text_config=text)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 128}),
        tokenizer=tokenizer)
    return _save(GroundingDinoForObjectDetection(config).eval(), processor, folder)


def save_tiny_sam(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """``SamModel`` (ViT of 1 layer, width 32, 64x64 input) + ``SamProcessor``."""
    import torch
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    torch.manual_seed(seed)
    config = SamConfig(
        vision_config=SamVisionConfig(hidden_size=32, output_channels=32, num_hidden_layers=1, num_attention_heads=2,
                                      image_size=64, patch_size=8, window_size=4, global_attn_indexes=[0],
                                      num_pos_feats=16, mlp_dim=64),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=32, image_size=64, patch_size=8,
                                                     mask_input_channels=4),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=32, mlp_dim=64, num_hidden_layers=1, num_attention_heads=2,
                                                 iou_head_depth=1, iou_head_hidden_dim=16))
    processor = SamProcessor(SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                               mask_size={"longest_edge": 16},
                                               mask_pad_size={"height": 16, "width": 16}))
    return _save(SamModel(config).eval(), processor, folder)


def save_tiny_sam2(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """``Sam2Model`` (Hiera of 4 one-block stages, widths 12-96, 128x128 input) + ``Sam2Processor``."""
    import torch
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2ImageProcessor,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2Processor,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    torch.manual_seed(seed)
    hiera = Sam2HieraDetConfig(hidden_size=12, image_size=128, patch_stride=4, patch_kernel_size=7, patch_padding=3,
                               blocks_per_stage=[1, 1, 1, 1], embed_dim_per_stage=[12, 24, 48, 96])
    config = Sam2Config(
        vision_config=Sam2VisionConfig(backbone_config=hiera, backbone_channel_list=[96, 48, 24, 12],
                                       backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]], fpn_hidden_size=32),
        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=32, image_size=128, patch_size=16,
                                                      mask_input_channels=8),
        mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_hidden_layers=1,
                                                  num_attention_heads=4, iou_head_depth=1, iou_head_hidden_dim=16))
    processor = Sam2Processor(Sam2ImageProcessor(size={"height": 128, "width": 128},
                                                 mask_size={"height": 32, "width": 32}))
    return _save(Sam2Model(config).eval(), processor, folder)


def save_tiny_clipseg(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """``CLIPSegForImageSegmentation`` (2-layer text and vision encoders of width 32, 64x64 input) +
    ``CLIPSegProcessor``."""
    import torch
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    torch.manual_seed(seed)
    config = CLIPSegConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "max_position_embeddings": 16, **CLIP_TEXT_IDS},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": 64, "patch_size": 16},
        projection_dim=16, extract_layers=[0, 1], reduce_dim=16, decoder_num_attention_heads=2,
        decoder_intermediate_size=32)
    image_processor = ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.485, 0.456, 0.406],
                                        image_std=[0.229, 0.224, 0.225])
    processor = CLIPSegProcessor(image_processor=image_processor, tokenizer=clip_tokenizer())
    return _save(CLIPSegForImageSegmentation(config).eval(), processor, folder)


def save_tiny_owlv2(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """``Owlv2ForObjectDetection`` (1-layer text and vision encoders of width 32, 64x64 input, 16 boxes) +
    ``Owlv2Processor``: the other detector of the ``grounded-sam`` backend."""
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    torch.manual_seed(seed)
    config = Owlv2Config(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                     "max_position_embeddings": 16, **CLIP_TEXT_IDS},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                       "image_size": 64, "patch_size": 16},
        projection_dim=32)  # the box class head compares image embeddings (width 32) with the text projection
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}),
                               tokenizer=clip_tokenizer())
    return _save(Owlv2ForObjectDetection(config).eval(), processor, folder)


BUILDERS = {"sam3": save_tiny_sam3, "grounding-dino": save_tiny_grounding_dino, "owlv2": save_tiny_owlv2,
            "sam": save_tiny_sam, "sam2": save_tiny_sam2, "clipseg": save_tiny_clipseg}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m semcontrib.segmentation.concepts_tiny",
                                description="Save a tiny random-weight model for the concepts region source.")
    p.add_argument("kind", choices=sorted(BUILDERS))
    p.add_argument("folder")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    path = BUILDERS[args.kind](args.folder, seed=args.seed)
    print(f"saved a tiny random-weight {args.kind} model to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
