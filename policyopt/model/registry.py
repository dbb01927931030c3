"""A registry of named option specs, validated as a pydantic discriminated union on ``name``.

Schedulers (:mod:`policyopt.model.scheduler`) and KV-cache admission rules
(:mod:`policyopt.model.admission`) are both declared in scenario and network files as a name
and its options. Each kind keeps one :class:`SpecRegistry`: registering a spec class (a
:class:`~policyopt.model.validation.StrictSpec` with ``name: Literal["..."]``) makes the name
valid in files; :meth:`SpecRegistry.parse` turns a name, ``NAME:OPTION``, a mapping or a spec
into the registered spec, refusing an unknown name or option with a one-line
:class:`~policyopt.errors.SpecError`.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar, Union

from pydantic import Field, TypeAdapter, ValidationError

from policyopt.errors import SpecError
from policyopt.model.validation import StrictSpec, spec_error

S = TypeVar("S", bound=StrictSpec)


class SpecRegistry(Generic[S]):
    """Spec classes of one kind (``what``: ``scheduler``, ``admission rule``), by name.

    ``option`` turns the ``OPTION`` of a ``NAME:OPTION`` string into keyword options for the
    spec class (``None``: the kind takes no ``NAME:OPTION`` strings); ``example`` is the fix
    shown when a value is neither a name nor a mapping.
    """

    def __init__(self, base: type[S], what: str, example: str) -> None:
        self.base = base
        self.what = what
        self.example = example
        self.specs: dict[str, type[S]] = {}
        self._adapter: TypeAdapter[Any] | None = None

    def register(self, spec: type[S]) -> type[S]:
        """Make ``spec`` (a subclass of the base with a ``Literal`` name) valid in files.
        Registering a name again replaces it."""
        name = spec.model_fields["name"].default
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"{spec.__name__}.name needs a Literal default, e.g. name: Literal['x']"
            )
        self.specs[name] = spec
        self._adapter = None
        return spec

    def unregister(self, name: str) -> None:
        """Forget the spec ``name`` (a no-op for an unknown name)."""
        self.specs.pop(name, None)
        self._adapter = None

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self.specs)

    def _union(self) -> TypeAdapter[Any]:
        """A discriminated union (on ``name``) of the registered specs."""
        if self._adapter is None:
            members = tuple(self.specs.values())
            if len(members) == 1:
                self._adapter = TypeAdapter(members[0])
            else:
                union = Annotated[Union[members], Field(discriminator="name")]  # noqa: UP007
                self._adapter = TypeAdapter(union)
        return self._adapter

    def parse(self, value: str | S | dict[str, Any]) -> S:
        """A registered spec from a name (``NAME`` or ``NAME:OPTION``), a mapping or a spec.

        Raises :class:`SpecError` naming the field (``name``, an option, an unknown key) and
        the fix.
        """
        if isinstance(value, self.base):
            return value
        if isinstance(value, str):
            name, _, option = value.strip().partition(":")
            data: dict[str, Any] = {"name": name}
            if option:
                spec = self.specs.get(name)
                if spec is not None:
                    data.update(spec.from_option(option))  # type: ignore[attr-defined]
            value = data
        if not isinstance(value, dict):
            article = "an" if self.what[0] in "aeiou" else "a"
            raise SpecError("", f"{article} {self.what} is a name or a mapping", self.example)
        name = value.get("name")
        if name is None:
            keys = ", ".join(map(str, value)) or "none"
            raise SpecError(
                "name",
                f"{self.what} mapping without a name (its keys: {keys})",
                f"add name: one of {', '.join(self.specs)}",
            )
        if name not in self.specs:
            raise SpecError(
                "name",
                f"unknown {self.what} {name!r} (the registered ones: {', '.join(self.specs)})",
                "choose one of those",
            )
        try:
            return self._union().validate_python(value)
        except ValidationError as err:
            raise spec_error(err, tags=set(self.specs)) from None
