"""LangGraph with its PostgreSQL checkpointer, running the turn that `../agent_turn.rs` measures, so
that the two can be compared on the same machine in the same hour (not part of the build or CI).

The turn (mirrors agent_turn.rs): call_model asks for one tool call (`add` with a=2, b=40, id
"call-1") -> await_approval pauses with `interrupt()` and waits for a person -> the person approves
(`Command(resume={"approve": True})`) -> run_tools runs `add` in this process -> call_model, having
seen the tool's result, answers "It is 42." -> end. The model is a fake that answers at once: no LLM
library, no network but PostgreSQL. Every step is checkpointed by `langgraph-checkpoint-postgres`
(AsyncPostgresSaver) through a psycopg pool of 16 connections (the size of Switchboard's pool).
Each turn is a thread (a chat) of its own. Every turn is checked: it pauses at the interrupt, ends
with "It is 42.", and the tool ran exactly once.

Measured like agent_turn.rs: 50 turns to warm up; the floor through the same pool (p50 of
`SELECT 1`, and of a bare autocommitted INSERT: an insert-and-commit), with the pool's checkout
inside the clock as sqlx's is; TURNS turns one after another (p50, p99, mean, turns/s, and the p50
of the parts: up to the pause, and the resume through the end); then 64 concurrent asyncio tasks of
TURNS/8 turns each (wall-clock turns/s, p50/p99 a turn). All of it twice:
  - durability="sync": each checkpoint is written before the next step starts (what Switchboard's
    graph does: a checkpoint committed after every step), and
  - durability="async", LangGraph's default (a checkpoint is written while the next step runs; the
    run still waits for the writes before it returns).
Each mode does its own 50-turn warm-up first.

    python3 -m venv /tmp/lg-venv && /tmp/lg-venv/bin/pip install -r domain/benches/langgraph/requirements.txt
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
        /tmp/lg-venv/bin/python domain/benches/langgraph/turn.py [TURNS]

TURNS defaults to 500. DATABASE_URL must let it create a database: it makes
`switchboard_bench_langgraph` (dropped first if it is there) and calls the saver's setup().
"""

import asyncio
import os
import platform
import statistics
import sys
import time
import uuid
from importlib.metadata import version
from typing import Annotated, TypedDict

import psycopg
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

DATABASE = "switchboard_bench_langgraph"
QUESTION = "2+40?"
POOL = 16
WARM_UP = 50
THREADS = 64

# How many times the tool has run (asyncio runs one task at a time, so a plain counter is safe).
ran = 0


class State(TypedDict):
    messages: Annotated[list, add_messages]


async def call_model(state: State):
    """The model: asks for the tool until it has seen its result, then answers (as Instant0)."""
    if isinstance(state["messages"][-1], ToolMessage):
        return {"messages": [AIMessage(content="It is 42.")]}
    call = {"id": "call-1", "name": "add", "args": {"a": 2, "b": 40}}
    return {"messages": [AIMessage(content="", tool_calls=[call])]}


def after_model(state: State):
    return "await_approval" if state["messages"][-1].tool_calls else END


async def await_approval(state: State):
    """Pauses the run until a person decides; a refusal goes back to the model as the call's result."""
    decision = interrupt({"calls": state["messages"][-1].tool_calls})
    if decision["approve"]:
        return Command(goto="run_tools")
    refused = [
        ToolMessage(content="The person refused this call.", tool_call_id=call["id"])
        for call in state["messages"][-1].tool_calls
    ]
    return Command(goto="call_model", update={"messages": refused})


def add(a: int, b: int) -> int:
    return a + b


async def run_tools(state: State):
    global ran
    results = []
    for call in state["messages"][-1].tool_calls:
        assert call["name"] == "add", call
        ran += 1
        results.append(ToolMessage(content=str(add(**call["args"])), tool_call_id=call["id"]))
    return {"messages": results}


def graph(checkpointer):
    g = StateGraph(State)
    g.add_node("call_model", call_model)
    g.add_node("await_approval", await_approval, destinations=("run_tools", "call_model"))
    g.add_node("run_tools", run_tools)
    g.add_edge(START, "call_model")
    g.add_conditional_edges("call_model", after_model, ["await_approval", END])
    g.add_edge("run_tools", "call_model")
    return g.compile(checkpointer=checkpointer)


async def turn(app, durability):
    """One whole turn in a new thread: (all, up to the pause) in seconds."""
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    started = time.perf_counter()
    paused = await app.ainvoke(
        {"messages": [HumanMessage(content=QUESTION)]}, config, durability=durability
    )
    pause = time.perf_counter() - started
    assert "__interrupt__" in paused, paused
    done = await app.ainvoke(Command(resume={"approve": True}), config, durability=durability)
    took = time.perf_counter() - started
    assert "__interrupt__" not in done, done
    assert done["messages"][-1].content == "It is 42.", done
    assert done["messages"][-2].content == "42", done
    return took, pause


def pct(values, p):
    """The same pick as agent_turn.rs: index round((n-1)·p), halves rounded up."""
    values = sorted(values)
    return values[int((len(values) - 1) * p + 0.5)]


def ms(seconds):
    return f"{seconds * 1000:.3f}"


async def floor(pool, count):
    """A bare round trip and a bare insert-and-commit through the pool, checkout included."""
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE bench_commit (id bigserial PRIMARY KEY, v int)")
    trips, commits = [], []
    for _ in range(count):
        started = time.perf_counter()
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        trips.append(time.perf_counter() - started)
        started = time.perf_counter()
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO bench_commit (v) VALUES (1)")
        commits.append(time.perf_counter() - started)
    print(
        f"through the same pool: a bare round trip p50 {ms(pct(trips, 0.5))} ms, "
        f"an insert-and-commit p50 {ms(pct(commits, 0.5))} ms"
    )


async def rows_per_turn(app, pool, durability):
    """Runs one turn in a thread of its own and counts what it left in each checkpoint table."""
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    await app.ainvoke({"messages": [HumanMessage(content=QUESTION)]}, config, durability=durability)
    await app.ainvoke(Command(resume={"approve": True}), config, durability=durability)
    thread = config["configurable"]["thread_id"]
    counts = []
    async with pool.connection() as conn:
        for table in ("checkpoints", "checkpoint_writes", "checkpoint_blobs"):
            cur = await conn.execute(f"SELECT count(*) AS n FROM {table} WHERE thread_id = %s", (thread,))
            counts.append(f"{(await cur.fetchone())['n']} {table}")
    return ", ".join(counts)


async def measure(app, pool, durability, turns, floor_first):
    global ran
    label = durability + (" (LangGraph's default)" if durability == "async" else "")
    for _ in range(WARM_UP):
        await turn(app, durability)
    if floor_first:
        await floor(pool, turns)
    print(f"== durability={label} ==")
    rows = await rows_per_turn(app, pool, durability)

    ran = 0
    took = [await turn(app, durability) for _ in range(turns)]
    assert ran == turns, f"the tool ran {ran} times in {turns} turns"
    times = [t for t, _ in took]
    print(f"a checkpointed approval turn (rows a turn leaves: {rows}), {turns} turns one after another:")
    print(
        f"p50 {ms(pct(times, 0.5))} ms, p99 {ms(pct(times, 0.99))} ms, "
        f"mean {ms(statistics.mean(times))} ms ({turns / sum(times):.0f} turns/s)"
    )
    print(
        f"p50 of its parts: to the pause {ms(pct([p for _, p in took], 0.5))} ms, "
        f"the resume (decision, tool and answer) through the end {ms(pct([t - p for t, p in took], 0.5))} ms"
    )

    each = max(turns // 8, 10)

    async def thread():
        return [(await turn(app, durability))[0] for _ in range(each)]

    ran = 0
    started = time.perf_counter()
    results = await asyncio.gather(*(thread() for _ in range(THREADS)))
    wall = time.perf_counter() - started
    times = [t for r in results for t in r]
    assert ran == len(times) == THREADS * each, f"the tool ran {ran} times in {len(times)} turns"
    print(
        f"{THREADS} threads at once, {len(times)} turns in {wall:.2f} s: "
        f"{len(times) / wall:.0f} turns/s (p50 {ms(pct(times, 0.5))} ms, "
        f"p99 {ms(pct(times, 0.99))} ms a turn)"
    )


async def main():
    turns = next((int(a) for a in sys.argv[1:] if a.isdigit()), 500)
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("set DATABASE_URL to a PostgreSQL server where the bench may create a database")
    print(
        f"Python {platform.python_version()}, langgraph {version('langgraph')}, "
        f"langgraph-checkpoint-postgres {version('langgraph-checkpoint-postgres')}, "
        f"psycopg {version('psycopg')}, psycopg-pool {version('psycopg-pool')}"
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    conninfo = psycopg.conninfo.make_conninfo(url, dbname=DATABASE)
    # The connection settings the saver needs when it is given a pool.
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(
        conninfo, min_size=POOL, max_size=POOL, kwargs=kwargs, open=False
    ) as pool:
        saver = AsyncPostgresSaver(pool)
        await saver.setup()
        app = graph(saver)
        # As agent_turn.rs: warm up, then the floor (once, after the first warm-up), then the turns.
        await measure(app, pool, "sync", turns, floor_first=True)
        await measure(app, pool, "async", turns, floor_first=False)


if __name__ == "__main__":
    asyncio.run(main())
