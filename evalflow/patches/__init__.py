"""Every change evalflow makes to another library's behaviour, in one guarded place.

Each patch is installed once a process (calling it again does nothing), and only when the
installed library is a version it was verified against and the upstream internals it relies
on are still as they were (its module's `drift()` finds nothing). Otherwise the library keeps
its own behaviour and a RuntimeWarning says once which patch stood aside and why: evalflow
then works as before, only slower (or, for llama-cpp-python, without the crash workaround).
tests/test_patches.py fails when an upstream internal changes.

openai.skip_plain_chat_transform (openai >=3.57,<3.58)
    Replaces `async_maybe_transform` in `openai.resources.chat.completions.completions`:
    plain chat bodies (strings, numbers, messages of string fields) skip the SDK's TypedDict
    transform, which only drops omitted arguments for them (12% of a traced request's CPU).
    Otherwise: every body goes through the SDK's transform.
openai_transport.http_client (openai >=3.57,<3.58, Linux)
    A subclass of `openai.DefaultAioHttpClient` whose `_init_transport` (httpx2's) sets the
    `client` attribute of the transport openai makes (`openai._vendor.httpx_aiohttp.
    transport.AiohttpTransport`): a callable making the aiohttp session (the connector the
    transport would make) with a trace that sets TCP_QUICKACK on the connection's socket once
    a response's headers are in. A server that writes headers and body apart with Nagle's
    algorithm on (Python's http.server) otherwise holds the body for Linux's delayed
    acknowledgement: 44 ms of every request. Otherwise: openai's `DefaultAioHttpClient`.
weave.remember_wandb_is_absent (weave >=0.54,<0.55, wandb not installed)
    `sys.modules["wandb"] = None`: weave's `import wandb` at every call start and end fails at
    once instead of searching sys.path again under the import lock. Otherwise: weave searches.
weave.use_attribute_is_op (weave >=0.54,<0.55, Python 3.11, local Weave store only)
    Rebinds `is_op` in weave's loaded modules to weave's own 3.12+ check (the attributes
    annotated on `Op`) instead of isinstance() against a runtime Protocol (~45 us a check, a
    fifth of a traced call). `restore_is_op` undoes it (a W&B project runs weave's own).
    Otherwise: weave's isinstance() check.
weave_plain.use_plain_fast_path (weave >=0.54,<0.55, local Weave store only; the source of
    every weave function it stands for is compared with the verified one)
    Wraps `to_json` and `map_to_refs` in `weave.trace.weave_client` and
    `WeaveClient._save_nested_objects`: a value made only of exactly dict (string keys), list,
    tuple, str, int, float, bool and None (a traced chat request's inputs and output) gets
    weave's result for it directly (a copy with the same leaves; nothing to save) instead of
    a ladder of type checks per value (11% of a traced request's CPU). `restore_weave_walks`
    undoes it (a W&B project runs weave's own). Otherwise: weave's own walks.
weave_table.publish_table (weave >=0.54,<0.55; the trace server's own table API, no change)
    Publishes a run's Weave dataset a chunk of rows at a time (`table_create` of each chunk,
    then `table_create_from_digests`), and not at all when the store has its table already;
    the dataset is a `weave.Dataset` over a `WeaveTable` of that table's `TableRef`, which
    `WeaveClient._save_table` keeps: the same dataset and digest as weave's upload of a list
    of every row. Otherwise: weave's own upload of every row at once.
weave_replay.record_call (weave >=0.54,<0.55; reads, nothing of weave's is changed)
    `evalflow run` on a local store sends its first rows through openai's own
    `AsyncCompletions.create` while weave is imported (`unwrapped_create`, only while weave is
    not imported), then records each through the op weave's openai integration wraps that
    method in (found in the wrapper's closure): the op's `_on_input_handler` gives the inputs,
    `WeaveClient.create_call(started_at=)` and `finish_call(op=, ended_at=)` the call with the
    request's own times, after the op's `_on_finish_post_processor` (evalflow/early_traces.py).
    Otherwise (another weave): no request is held; each waits for weave, as before.
llama_cpp.disable_weight_repacking (llama-cpp-python >=0.3.36,<0.4, in the local LLM process)
    Wraps `llama_cpp.llama_cpp.llama_model_default_params` to set the ctypes field
    `use_extra_bufts` to False: repacked AMX weights segfault at the first decode in VMs that
    do not grant AMX tile state. The field is checked in `llama_model_params._fields_` first.
    Otherwise: weights are repacked as shipped (and may crash on such machines).
prefect.temporary_servers (prefect >=3.9,<3.10; a read, nothing is changed)
    Reads `SubprocessASGIServer._instances` in `prefect.server.api.server` to stop prefect's
    temporary API servers when a stop signal ends evalflow (evalflow/endpoints/shutdown.py).
    Otherwise: prefect's own exit handlers stop them.
prefect_parameters.plain_parameters (prefect >=3.9,<3.10; the source of
    `Flow.serialize_parameters` is compared with the verified one)
    Gives the `evaluate` flow object (only it: an attribute of that instance) a
    `serialize_parameters` that, when every parameter is plain JSON (exactly dict with string
    keys, list, tuple, str, int, float, bool, None), returns a copy of them (tuples as lists),
    as FastAPI's `jsonable_encoder` does, without importing FastAPI for it (0.16 s of CPU in
    `evalflow run`'s flow run). Otherwise: Prefect's own method, FastAPI's encoder.
prefect.temporary_server_command (prefect >=3.9,<3.10; a read, nothing is changed)
    The command and settings with which `SubprocessASGIServer._run_uvicorn_command` starts
    prefect's temporary API server (uvicorn over `prefect.server.api.server:create_app`, UI
    off, `PREFECT__SERVER_EPHEMERAL`): `evalflow run` starts that server itself, first, so it
    gets ready while evalflow imports and plans (evalflow/temporary_server.py).
    Otherwise: prefect starts its own when the flow first needs it, as before.
"""
