"""The hyperparameters of ``policyopt train`` as validated models (``docs/learning.md``).

:func:`validate_hyperparams` checks a full hyperparameter mapping (the defaults of
:data:`~policyopt.learn.common.DEFAULT_HYPERPARAMS` with a user's file over them) against
:class:`Hyperparameters`: one section per algorithm (:class:`PPOHyper`, :class:`A2CHyper`,
:class:`MaskablePPOHyper`: the keyword arguments of the stable-baselines3 constructor this
project lets a user set, with their bounds), the environment (:class:`EnvHyper`), the periodic
evaluation, the checkpoints and the behaviour-cloning warm start. Unknown keys, values out of
range, wrong types and a boolean where a number is expected raise
:class:`~policyopt.errors.SpecError` naming the field (``ppo.learning_rate``) and the fix.

A valid mapping comes back unchanged (numbers as the field's type: ``gamma: 1`` is ``1.0``):
the keys a user did not set are not added, so stable-baselines3 receives exactly the keyword
arguments it received before these models existed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from policyopt.errors import SpecError
from policyopt.model.validation import StrictSpec, spec_error

MAX_ROLLOUT = 1_000_000
"""The largest rollout accepted: ``n_steps x env.n_envs`` env steps per update (the rollout
buffer holds that many observations, values and log-probabilities)."""

MAX_N_ENVS = 256
"""The largest ``env.n_envs`` accepted (each is a simulator; with ``vec_env: subproc`` a
process)."""

MAX_LAYER = 65_536
"""The widest hidden layer accepted in ``policy_kwargs.net_arch``."""

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Discount = Annotated[float, Field(gt=0, le=1)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class PolicyKwargs(StrictSpec):
    """``policy_kwargs`` of an ``MlpPolicy``: only the keys given reach stable-baselines3
    (a section without ``policy_kwargs`` keeps the default ``{net_arch: [64, 64]}``)."""

    net_arch: list[Annotated[int, Field(ge=1, le=MAX_LAYER)]] | None = None
    """Hidden layer widths, shared by the actor and the critic (``[64, 64]``)."""
    ortho_init: bool | None = None
    share_features_extractor: bool | None = None


class _AlgoHyper(StrictSpec):
    """What PPO, A2C and MaskablePPO share. Fields without a default are the ones
    :data:`~policyopt.learn.common.DEFAULT_HYPERPARAMS` sets; the optional ones reach
    stable-baselines3 only when given."""

    learning_rate: PositiveFloat
    n_steps: PositiveInt
    gamma: Discount
    gae_lambda: Fraction
    ent_coef: NonNegativeFloat
    vf_coef: NonNegativeFloat
    max_grad_norm: PositiveFloat
    policy_kwargs: PolicyKwargs
    normalize_advantage: bool | None = None
    stats_window_size: PositiveInt | None = None


class PPOHyper(_AlgoHyper):
    """The ``ppo`` section: keyword arguments of ``stable_baselines3.PPO``."""

    batch_size: PositiveInt
    n_epochs: PositiveInt
    clip_range: PositiveFloat
    clip_range_vf: PositiveFloat | None = None
    target_kl: PositiveFloat | None = None

    @model_validator(mode="after")
    def _minibatch(self) -> PPOHyper:
        if self.normalize_advantage is not False and self.batch_size < 2:
            raise SpecError(
                "batch_size",
                "must be >= 2 while normalize_advantage is true (advantages are normalized "
                "over each minibatch)",
                "use a larger batch_size, or set normalize_advantage: false",
            )
        return self


class MaskablePPOHyper(PPOHyper):
    """The ``maskable-ppo`` section: keyword arguments of ``sb3_contrib.MaskablePPO``."""


class A2CHyper(_AlgoHyper):
    """The ``a2c`` section: keyword arguments of ``stable_baselines3.A2C``."""

    rms_prop_eps: PositiveFloat | None = None
    use_rms_prop: bool | None = None


class EnvHyper(StrictSpec):
    """The ``env`` section: the environment's keyword arguments and the vector env."""

    horizon: PositiveFloat
    load: PositiveFloat | None
    random_init: bool
    init_jobs: NonNegativeInt
    reward_scale: PositiveFloat
    action: Literal["order", "split", "cap"]
    split_levels: Annotated[int, Field(ge=2)]
    n_envs: Annotated[int, Field(ge=1, le=MAX_N_ENVS)]
    vec_env: Literal["dummy", "subproc", "sharded"]
    workers: Annotated[int, Field(ge=1, le=MAX_N_ENVS)]
    normalize_reward: bool


class EvalHyper(StrictSpec):
    """The ``eval`` section: periodic evaluation (``eval_freq: 0``: none)."""

    eval_freq: NonNegativeInt
    n_eval_episodes: PositiveInt


class CheckpointHyper(StrictSpec):
    """The ``checkpoint`` section (``save_freq: 0``: no periodic checkpoint)."""

    save_freq: NonNegativeInt


class BCHyper(StrictSpec):
    """The ``bc`` section: the behaviour-cloning warm start."""

    steps: PositiveInt
    epochs: PositiveInt
    batch_size: PositiveInt
    learning_rate: PositiveFloat


class Hyperparameters(StrictSpec):
    """Every hyperparameter of ``policyopt train``, one model per section."""

    env: EnvHyper
    ppo: PPOHyper
    a2c: A2CHyper
    maskable_ppo: MaskablePPOHyper = Field(alias="maskable-ppo")
    ppo_avg: PPOHyper = Field(alias="ppo-avg")
    eval: EvalHyper
    checkpoint: CheckpointHyper
    bc: BCHyper

    @model_validator(mode="after")
    def _rollouts(self) -> Hyperparameters:
        n_envs = self.env.n_envs
        for name in ("ppo", "a2c", "maskable-ppo", "ppo-avg"):
            algo = self.section(name)
            size = algo.n_steps * n_envs
            if size > MAX_ROLLOUT:
                raise SpecError(
                    f"{name}.n_steps",
                    f"{algo.n_steps} steps x {n_envs} envs is a rollout of {size:,} steps, above "
                    f"the limit of {MAX_ROLLOUT:,} (the rollout buffer holds them all)",
                    "use fewer n_steps or env.n_envs",
                )
            # SB3's PPO normalizes advantages by default, its A2C only when asked
            normalize = algo.normalize_advantage
            if normalize is None:
                normalize = name != "a2c"
            if size < 2 and normalize:
                raise SpecError(
                    f"{name}.n_steps",
                    "a rollout of 1 step (n_steps x env.n_envs) cannot normalize advantages",
                    "use n_steps >= 2, more env.n_envs, or normalize_advantage: false",
                )
        return self

    def section(self, name: str) -> BaseModel:
        """The section ``name`` as written in the file (``maskable-ppo``)."""
        return getattr(self, name.replace("-", "_"))

    def dump(self) -> dict[str, Any]:
        """The mapping, keys as in the file; optional keys only when set."""
        return self.model_dump(by_alias=True, exclude_unset=True)


RESERVED = ("policy", "env", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model")
"""Keyword arguments of the stable-baselines3 constructors that ``policyopt train`` sets
itself."""


def keys_of(loc: tuple[str, ...]) -> list[str]:
    """The keys accepted in the mapping at ``loc`` (``()``: the sections; ``("ppo",)``: the
    ``ppo`` keys; ``("ppo", "policy_kwargs")``...); ``[]`` when ``loc`` is not a mapping."""
    cls: type[BaseModel] = Hyperparameters
    for part in loc:
        fields = {info.alias or name: info for name, info in cls.model_fields.items()}
        info = fields.get(part)
        sub = _model_in(info.annotation) if info is not None else None
        if sub is None:
            return []
        cls = sub
    return [info.alias or name for name, info in cls.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def validate_hyperparams(data: dict[str, Any], where: str = "") -> dict[str, Any]:
    """``data`` (every section, every key :data:`~policyopt.learn.common.DEFAULT_HYPERPARAMS`
    sets) validated by :class:`Hyperparameters` and dumped back (:meth:`Hyperparameters.dump`).
    Bad values raise :class:`SpecError` naming the field; ``where`` (a file) goes into the
    fix."""
    try:
        model = Hyperparameters.model_validate(data)
    except ValidationError as err:
        raise _explain(err, where) from None
    except SpecError as err:  # a check of the whole mapping
        raise _located(err, where) from None
    return _ordered_like(data, model.dump())


def _ordered_like(data: Any, dumped: Any) -> Any:
    """``dumped`` with its keys in the order of ``data`` (the mapping it was validated from)."""
    if isinstance(data, dict) and isinstance(dumped, dict):
        return {k: _ordered_like(data[k], dumped[k]) for k in data if k in dumped}
    return dumped


def _explain(err: ValidationError, where: str) -> SpecError:
    first = err.errors()[0]
    error = spec_error(err)
    if first.get("type") == "extra_forbidden":
        loc = tuple(str(p) for p in first.get("loc", ()))
        parent, key = loc[:-1], loc[-1] if loc else ""
        allowed = keys_of(parent)
        if parent and parent[-1] in ("ppo", "a2c", "maskable-ppo", "ppo-avg") and key in RESERVED:
            problem = "is set by policyopt train itself (--seed, the environment, the device)"
            fix = "remove it"
        else:
            what = "hyperparameter section" if not parent else f"key of {'.'.join(parent)}"
            problem = f"unknown {what}"
            fix = f"use one of {', '.join(allowed)}" if allowed else "remove it"
        error = SpecError(error.field, problem, fix)
    elif first.get("type") == "list_type":
        error = SpecError(error.field, error.problem, "write a list, e.g. [64, 64]")
    elif first.get("type") in ("model_type", "model_attributes_type", "dict_type"):
        got = first.get("input")
        error = SpecError(
            error.field, f"must be a mapping of keys to values, got {got!r}", "write {key: value}"
        )
    return _located(error, where)


def _located(err: SpecError, where: str) -> SpecError:
    if not where:
        return err
    fix = f"{err.fix} (in {where})" if err.fix else f"fix it in {where}"
    return SpecError(err.field, err.problem, fix)
