"""Querysets of a fixed shape, compiled to SQL once per thread and then run with new parameters.

Django compiles a queryset to SQL each time it is evaluated. On the reading API's hottest path that costs more
than running the query: submit's locking query (the item with its session, study, case and modality, 30 columns,
FOR UPDATE OF the session) takes 0.75 ms of CPU to compile and 0.1 ms for PostgreSQL to run. A ``FrozenQuery``
builds the queryset once with sentinels in place of its varying values, keeps the compiled SQL and the
compiler's column map, and afterwards only substitutes the values and turns the rows into model instances the way
Django's own ``ModelIterable`` does (select_related objects, deferred fields and field converters included).
The SQL goes through Django's cursor, so query logging and ``CaptureQueriesContext`` see it as before.

A ``FrozenInsert`` does the same for ``Model.objects.create`` of a fixed set of fields: the INSERT is compiled
once; each call builds the instance and its parameters as Django's insert compiler does (``pre_save``, then
``get_db_prep_save``) and runs the SQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import Field, Model, QuerySet, signals
from django.db.models.query import get_related_populators  # type: ignore[attr-defined]  # not in django-stubs
from django.db.models.sql.compiler import SQLCompiler
from django.db.models.sql.subqueries import InsertQuery

# Stand for the varying values while compiling (SENTINEL + i for the i-th); each must appear exactly once among the
# compiled parameters. Within the range of every integer column, small ones included: Django compiles a value out
# of a column's range into an empty query or drops the condition.
SENTINEL = 32_000


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    slots: tuple[int, ...]  # where each varying value goes in ``params``
    compiler: SQLCompiler
    locks: bool  # SELECT ... FOR UPDATE: only inside a transaction, as Django requires


class FrozenQuery:
    """``build(*values)`` returns the queryset for ``arity`` values; all values must give the same SQL shape."""

    def __init__(self, build: Callable[..., QuerySet], arity: int = 1) -> None:
        self._build = build
        self._sentinels = tuple(SENTINEL + i for i in range(arity))
        self._local = threading.local()  # a compiler is not shared between threads (gthread workers)

    def _compiled(self, using: str) -> _Compiled:
        cache: dict[str, _Compiled] = self._local.__dict__.setdefault("by_db", {})
        if using not in cache:
            queryset = self._build(*self._sentinels)
            compiler = queryset.query.get_compiler(using=using)
            # as_sql() refuses FOR UPDATE outside a transaction even when only compiling
            saved = compiler.connection.in_atomic_block
            compiler.connection.in_atomic_block = True
            try:
                sql, params = compiler.as_sql()
            except EmptyResultSet:
                message = f"a frozen query compiles to an empty query with its values {self._sentinels}"
                raise ValueError(message) from None
            finally:
                compiler.connection.in_atomic_block = saved
            slots = []
            for sentinel in self._sentinels:
                found = [i for i, p in enumerate(params) if p == sentinel and not isinstance(p, bool)]
                if len(found) != 1:
                    raise ValueError(f"a frozen query needs each value exactly once among its parameters: {found}")
                slots.append(found[0])
            cache[using] = _Compiled(sql, tuple(params), tuple(slots), compiler, queryset.query.select_for_update)
        return cache[using]

    def _rows(self, values: tuple[Any, ...], using: str) -> tuple[_Compiled, list[Sequence[Any]]]:
        compiled = self._compiled(using)
        connection = connections[using]
        if compiled.locks and not connection.in_atomic_block:
            raise RuntimeError("a locking query (select_for_update) must run inside a transaction")
        if len(values) != len(compiled.slots):
            raise TypeError(f"this frozen query takes {len(compiled.slots)} values, got {len(values)}")
        params = list(compiled.params)
        for slot, value in zip(compiled.slots, values, strict=True):
            params[slot] = value
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        return compiled, rows

    def values(self, *values: Any, using: str = "default") -> list[Sequence[Any]]:
        """The rows as tuples (for a ``values_list`` queryset), field converters applied."""
        compiled, rows = self._rows(values, using)
        return list(compiled.compiler.results_iter([rows], tuple_expected=True))

    def objects(self, *values: Any, using: str = "default") -> list[Model]:
        """The rows as model instances, with their select_related objects (as ``ModelIterable`` builds them)."""
        compiled, rows = self._rows(values, using)
        compiler = compiled.compiler
        if compiler.annotation_col_map:
            raise ValueError("a frozen query of model instances takes no annotations")
        select, klass_info = compiler.select, compiler.klass_info
        model = klass_info["model"]
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        init_list = [column[0].target.attname for column in select[start:end]]
        populators = get_related_populators(klass_info, select, using)
        out = []
        for row in compiler.results_iter([rows]):
            obj = model.from_db(using, init_list, row[start:end])
            for populator in populators:
                populator.populate(row, obj)
            out.append(obj)
        return out


M = TypeVar("M", bound=Model)


class FrozenInsert(Generic[M]):
    """``create(**values)`` inserts one row of ``model`` with exactly ``fields`` (names as ``create`` takes them)
    and returns the saved instance, its pk set. The model's save() and its pre/post-save signals are not run: a
    model that overrides save() or has signal receivers is refused (the ORM's ``create`` would run them)."""

    def __init__(self, model: type[M], fields: Sequence[str]) -> None:
        if "save" in vars(model):
            raise TypeError(f"{model.__name__} overrides save(): create its rows through the ORM")
        self._model = model
        self._names = frozenset(fields)
        self._fields: tuple[Field, ...] = tuple(_concrete(model, name) for name in fields)
        self._local = threading.local()

    def _compiled(self, using: str) -> tuple[str, Any]:
        cache: dict[str, tuple[str, Any]] = self._local.__dict__.setdefault("by_db", {})
        if using not in cache:
            query = InsertQuery(self._model)
            query.insert_values(self._fields, [self._model()])
            compiler = query.get_compiler(using=using)
            compiler.returning_fields = [self._model._meta.pk]
            [(sql, _)] = compiler.as_sql()
            cache[using] = (sql, compiler.returning_params)
        return cache[using]

    def create(self, *, using: str = "default", **values: Any) -> M:
        if values.keys() != self._names:
            raise TypeError(f"this insert takes exactly {sorted(self._names)}, got {sorted(values)}")
        model = self._model
        if signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model):
            raise RuntimeError(f"{model.__name__} has save signal receivers: create its rows through the ORM")
        obj = model(**values)
        connection = connections[using]
        sql, returning_params = self._compiled(using)
        params = [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in self._fields]
        pk = model._meta.pk
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if connection.features.can_return_columns_from_insert:
                (obj.pk,) = connection.ops.fetch_returned_insert_columns(cursor, returning_params)
            else:
                obj.pk = connection.ops.last_insert_id(cursor, model._meta.db_table, pk.column)
        obj._state.adding, obj._state.db = False, using
        return obj


def _concrete(model: type[Model], name: str) -> Field:
    field = model._meta.get_field(name)
    if not isinstance(field, Field) or not field.concrete:
        raise TypeError(f"{model.__name__}.{name} is not a column of its table")
    return field
