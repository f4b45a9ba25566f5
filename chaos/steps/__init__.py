"""Step kinds: actions a phase runs in order beside its probes (`- restart: cache`,
`- retag: {image: ..., to: ...}`, `- wait: 2s`), keyed like probes by the key that marks
them. They join the phase items' registry (chaos.probes.PROBES), after every probe kind,
so the loader, the JSON Schema, `chaos list` and the reports treat them as the probes'
neighbours; each result's kind is `step`, and the timeline draws them as steps.

Adding one: a module here holding its model and its action, and one line below.
"""

STEPS = {  # key -> "module:Class" in this package
    "push": "upstream:PushStep",
    "retag": "upstream:RetagStep",
    "delete": "upstream:DeleteStep",
    "stop": "component:StopStep",
    "start": "component:StartStep",
    "restart": "component:RestartStep",
    "wait": "wait:WaitStep",
}
