"""The contract of a part of the benchmark."""


class Part:
    """A named set of figures and how one repetition measures them."""

    name = ""  # what `--only` calls it and its figures start with

    def __init__(self, harness):
        self.harness = harness
        self.options = harness.options
        self.report = harness.report

    def define(self):
        """Define this part's figures in the report, in the table's order."""
        raise NotImplementedError("subclasses must define their figures")

    def prepare(self):
        """Set up what every repetition needs; return False if the part cannot
        run, having reported why against its figures."""
        return True

    def run(self):
        """Measure each of this part's figures once."""
        raise NotImplementedError("subclasses must measure their figures")
