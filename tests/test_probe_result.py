"""What a probe's verdict says about itself (console, JUnit and pytest all print message())."""

from chaos.probes.result import ProbeResult


def test_error_message_gives_the_reason():
    raised = ProbeResult("before", "p", "requests", verdict="error",
                         detail={"error": "RuntimeError: requests needs `lab: registry`"})
    assert raised.message() == "error: RuntimeError: requests needs `lab: registry`"


def test_agent_error_message_gives_what_the_agent_printed():
    agent = ProbeResult("during", "p", "http", verdict="error",
                        detail={"error": "agent", "message": "ModuleNotFoundError: No module named 'x'"})
    assert agent.message() == "error: probe agent failed: ModuleNotFoundError: No module named 'x'"
