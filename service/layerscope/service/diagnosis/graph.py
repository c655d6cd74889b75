"""A read-only view of a model's flattened layer graph, for walking it forwards and backwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from layerscope.service.domain.description import InputSpec, LayerInfo, ModelDescription


class Graph:
    """The real layers of a description (nested-model entries left out) with their neighbours.

    Nested-model entries (`sub`) are containers: their inner layers carry the graph, so walks skip them.
    """

    def __init__(self, description: ModelDescription) -> None:
        self.description = description
        self.containers = frozenset(layer.parent for layer in description.layers if layer.parent)
        self.layers = tuple(layer for layer in description.layers if layer.name not in self.containers)
        self._by_name = {layer.name: layer for layer in description.layers}
        self._successors: dict[str, list[LayerInfo]] = {layer.name: [] for layer in self.layers}
        for layer in self.layers:
            for source in layer.inbound:
                if source != layer.name and source in self._successors:
                    self._successors[source].append(layer)
        self.outputs = frozenset(description.outputs)

    def get(self, name: str) -> LayerInfo:
        return self._by_name[name]

    def predecessors(self, layer: LayerInfo) -> list[LayerInfo]:
        return [
            self._by_name[n]
            for n in layer.inbound
            if n != layer.name and n in self._by_name and n not in self.containers
        ]

    def successors(self, layer: LayerInfo) -> list[LayerInfo]:
        return list(self._successors.get(layer.name, ()))

    def is_output(self, layer: LayerInfo) -> bool:
        return layer.name in self.outputs

    def model_inputs_of(self, layer: LayerInfo) -> list[InputSpec]:
        """The model inputs that feed a layer directly (a layer with no inbound layer reads the inputs)."""
        if self.predecessors(layer):
            return []
        shapes = set(layer.input_shapes)
        specs = [spec for spec in self.description.inputs if spec.shape in shapes]
        return specs or list(self.description.inputs[:1])

    def upstream(self, layer: LayerInfo, through: Callable[[LayerInfo], bool]) -> Iterator[LayerInfo]:
        """Layers reached walking back from `layer`, entering only those for which `through` holds.

        Every reached layer is yielded once; the walk continues past it only when `through(it)` is True.
        """
        return self._walk(layer, through, self.predecessors)

    def downstream(self, layer: LayerInfo, through: Callable[[LayerInfo], bool]) -> Iterator[LayerInfo]:
        """Like `upstream`, walking forwards."""
        return self._walk(layer, through, self.successors)

    @staticmethod
    def _walk(
        layer: LayerInfo,
        through: Callable[[LayerInfo], bool],
        step: Callable[[LayerInfo], list[LayerInfo]],
    ) -> Iterator[LayerInfo]:
        seen = {layer.name}
        frontier = step(layer)
        while frontier:
            current = frontier.pop()
            if current.name in seen:
                continue
            seen.add(current.name)
            yield current
            if through(current):
                frontier.extend(step(current))

    def reads_model_input(self, layer: LayerInfo, through: Callable[[LayerInfo], bool]) -> list[InputSpec]:
        """The model inputs reached walking back from `layer` through layers for which `through` holds."""
        found = list(self.model_inputs_of(layer))
        for node in self.upstream(layer, through):
            if through(node):
                found.extend(s for s in self.model_inputs_of(node) if s not in found)
        return found
