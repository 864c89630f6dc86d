"""Job configuration: typed dataclasses loaded from YAML with every key checked."""
from scaling_study.config.job import (
    DataConfig, EvalConfig, Job, ModelConfig, OptimizerConfig, OutputConfig, Phase, PhaseConfig,
    ScalingConfig, ScheduleConfig, SynthConfig, TargetConfig, TrainConfig,
    with_absolute_paths,
)
from scaling_study.config.load import apply_overrides, dump_job, job_from_dict, load_job, load_yaml

__all__ = [
    "DataConfig", "EvalConfig", "Job", "ModelConfig", "OptimizerConfig", "OutputConfig", "Phase",
    "PhaseConfig", "ScalingConfig", "ScheduleConfig", "SynthConfig", "TargetConfig", "TrainConfig",
    "with_absolute_paths", "apply_overrides", "dump_job", "job_from_dict", "load_job", "load_yaml",
]
