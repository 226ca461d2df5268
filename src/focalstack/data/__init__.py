"""Focal-stack data: the sample format, image I/O, the torch Dataset, synthesis and import."""

from .dataset import FocalStackDataset, StackAugment, collate_stacks
from .format import (FocalStackSample, check_sample, is_sample_dir, list_samples, load_camera, load_sample,
                     save_sample)
from .io import SampleError, read_depth, read_image, write_image
from .synth_dataset import SynthConfig, SynthResult, synthesize_dataset

__all__ = ["FocalStackSample", "FocalStackDataset", "StackAugment", "collate_stacks", "SampleError", "check_sample", "is_sample_dir",
           "list_samples", "load_camera", "load_sample", "save_sample", "read_image", "read_depth",
           "write_image", "SynthConfig", "SynthResult", "synthesize_dataset"]
