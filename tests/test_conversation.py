"""The call page's conversation: turns, tool calls placed where they happened, fallbacks."""

from calls.conversation import Marker, ToolCall, Turn, conversation, pretty
from calls.models import Call, ToolInvocation
from tests.conftest import fixture_json


def call_with(**fields):
    return Call(call_id="call_x", **fields)


def test_tool_calls_sit_where_they_were_invoked_with_their_result():
    items = fixture_json("retell_call_analyzed")["call"]["transcript_with_tool_calls"]
    result = conversation(call_with(transcript_with_tool_calls=items))
    kinds = [item.kind for item in result]
    assert kinds.count("tool") == 2 and kinds.count("turn") == 9
    first_tool = kinds.index("tool")
    assert result[first_tool - 1].text == "I need to book a cleaning, ideally next Tuesday afternoon."
    tool = result[first_tool]
    assert tool.name == "check_availability" and tool.successful is True
    assert '"time_of_day": "afternoon"' in tool.arguments  # indented JSON from Retell's JSON string
    assert '"spoken": "Tuesday, December 8 at 2:00 PM"' in tool.result
    assert result[0].speaker == "Agent" and result[0].at_seconds == 0.6
    assert result[1].speaker == "Caller" and result[1].role == "user"


def test_tool_calls_are_matched_to_our_invocation_log_by_name_and_arguments():
    items = [
        {
            "role": "tool_call_invocation",
            "tool_call_id": "1",
            "name": "add_tags",
            "arguments": '{"tags": ["a"]}',
        },
        {
            "role": "tool_call_invocation",
            "tool_call_id": "2",
            "name": "add_tags",
            "arguments": '{"tags": ["b"]}',
        },
        {"role": "tool_call_result", "tool_call_id": "2", "content": "ok", "successful": False},
    ]
    logged_b = ToolInvocation(tool_name="add_tags", arguments={"tags": ["b"]}, latency_ms=20)
    logged_a = ToolInvocation(tool_name="add_tags", arguments={"tags": ["a"]}, latency_ms=10)
    first, second = conversation(call_with(transcript_with_tool_calls=items), [logged_b, logged_a])
    assert first.invocation is logged_a and second.invocation is logged_b
    assert first.result is None and second.result == "ok" and second.successful is False


def test_results_without_invocations_markers_and_junk_are_shown_not_dropped():
    items = [
        "junk",
        {
            "role": "node_transition",
            "former_node_name": "greeting",
            "new_node_name": "booking",
            "time_sec": 4.2,
        },
        {"role": "dtmf", "digit": "5"},
        {"role": "tool_call_result", "tool_call_id": "zz", "content": "{not json"},
        {"role": "agent", "content": ""},
        {"role": "transfer_target", "content": "Front desk, how can I help?"},
    ]
    node, dtmf, orphan, transfer = conversation(call_with(transcript_with_tool_calls=items))
    assert isinstance(node, Marker) and node.detail == "greeting → booking" and node.at_seconds == 4.2
    assert isinstance(dtmf, Marker) and dtmf.label == "Keypad" and dtmf.detail == "5"
    assert isinstance(orphan, ToolCall) and orphan.result == "{not json"
    assert isinstance(transfer, Turn) and transfer.speaker == "Transfer target"


def test_falls_back_to_transcript_object_then_plain_text():
    objects = [{"role": "agent", "content": "Hello."}, {"role": "user", "content": "Hi."}]
    assert [t.speaker for t in conversation(call_with(transcript_object=objects))] == ["Agent", "Caller"]
    plain = conversation(call_with(transcript="Agent: Hello.\nUser: Hi.\nstatic noise\n"))
    assert [(t.role, t.speaker, t.text) for t in plain] == [
        ("agent", "Agent", "Hello."),
        ("user", "Caller", "Hi."),
        ("", "", "static noise"),
    ]
    assert conversation(call_with()) == []


def test_pretty():
    assert pretty('{"b": 1, "a": [true]}') == '{\n  "a": [\n    true\n  ],\n  "b": 1\n}'
    assert pretty("plain words") == "plain words"
    assert pretty(True) == "true" and pretty(None) == "" and pretty(3) == "3"
