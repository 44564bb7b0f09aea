"""The traceback parser: real shapes of Python tracebacks as they end up in logs."""
import io

from postmortem.model import Trace
from postmortem.reader import iter_lines
from postmortem.tracebacks import split_tracebacks

SP = "/opt/conda/lib/python3.11/site-packages"


def traces_of(text: str) -> list[Trace]:
    items = split_tracebacks(iter_lines(io.BytesIO(text.encode()), "t.log"))
    return [i for i in items if isinstance(i, Trace)]


def test_frames_exception_and_innermost_in_app_frame():
    [trace] = traces_of(f'''Traceback (most recent call last):
  File "/workspace/train.py", line 187, in <module>
    main()
  File "{SP}/torch/nn/modules/module.py", line 1736, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/workspace/tiny_lora.py", line 57, in forward
    logits = self.score(hidden_states)
  File "{SP}/torch/nn/functional.py", line 12, in linear
    return torch._C._nn.linear(input, weight, bias)
RuntimeError: expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != float
''')
    [stack] = trace.stacks
    assert stack.exc_type == "RuntimeError"
    assert [f.in_app for f in stack.frames] == [True, False, True, False]
    frame = stack.in_app_frame
    assert (frame.filename, frame.lineno, frame.name, frame.line) == (
        "/workspace/tiny_lora.py", 57, "forward", "logits = self.score(hidden_states)")


def test_qualified_exception_type_and_multiline_message():
    [trace] = traces_of('''Traceback (most recent call last):
  File "/w/train.py", line 3, in <module>
    torch.load("data.pt")
_pickle.UnpicklingError: Weights only load failed. This file can still be loaded, to do so you have two options.
	(1) In PyTorch 2.6, we changed the default value of the `weights_only` argument in `torch.load` from `False` to `True`.
WeightsUnpickler error: Unsupported global: GLOBAL torch_geometric.data.hetero_data.HeteroData was not an allowed global by default.

Epoch 2 starts
''')
    [stack] = trace.stacks
    assert stack.exc_type == "_pickle.UnpicklingError"
    assert "Unsupported global" in stack.message
    assert "Epoch 2" not in stack.message


def test_chained_exceptions_keep_the_root_first():
    [trace] = traces_of('''Traceback (most recent call last):
  File "/w/a.py", line 1, in <module>
    d["x"]
KeyError: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/w/a.py", line 3, in <module>
    raise RuntimeError("wrapped")
RuntimeError: wrapped

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/w/a.py", line 5, in <module>
    raise ValueError("outer")
ValueError: outer
''')
    assert [s.exc_type for s in trace.stacks] == ["KeyError", "RuntimeError", "ValueError"]
    assert [s.is_cause for s in trace.stacks] == [False, False, True]


def test_two_tracebacks_without_marker_are_two_traces():
    traces = traces_of('''Traceback (most recent call last):
  File "/w/a.py", line 1, in <module>
ValueError: one

Traceback (most recent call last):
  File "/w/b.py", line 1, in <module>
KeyError: 'two'
''')
    assert [[s.exc_type for s in t.stacks] for t in traces] == [["ValueError"], ["KeyError"]]


def test_ipython_traceback():
    [trace] = traces_of(f'''---------------------------------------------------------------------------
RuntimeError                              Traceback (most recent call last)
Cell In[3], line 5
      3 x = torch.randn(2, 3)
      4 y = torch.randn(4, 5)
----> 5 z = x @ y

File {SP}/torch/nn/modules/module.py:1501, in Module._call_impl(self, *args, **kwargs)
-> 1501     return forward_call(*args, **kwargs)

RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)
''')
    [stack] = trace.stacks
    assert stack.exc_type == "RuntimeError"
    assert stack.in_app_frame.filename == "Cell In[3]"
    assert stack.in_app_frame.lineno == 5
    assert stack.in_app_frame.line == "z = x @ y"


def test_exception_group_lists_members_before_the_group():
    [trace] = traces_of('''  + Exception Group Traceback (most recent call last):
  |   File "/home/u/x.py", line 3, in <module>
  |     raise ExceptionGroup("many", [ValueError(1), TypeError(2)])
  | ExceptionGroup: many (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | ValueError: 1
    +---------------- 2 ----------------
    | TypeError: 2
    +------------------------------------
''')
    assert [s.exc_type for s in trace.stacks] == ["ValueError", "TypeError", "ExceptionGroup"]


def test_interleaved_ranks_give_one_trace_each():
    ranks = range(4)
    lines = []
    for template in ['Traceback (most recent call last):', '  File "/w/a.py", line 9, in step',
                     '    loss.backward()', 'torch.OutOfMemoryError: CUDA out of memory.']:
        lines += [f"[rank{r}]: {template}" for r in ranks]
    traces = traces_of("\n".join(lines) + "\n")
    assert sorted(t.stream for t in traces) == [f"rank{r}" for r in ranks]
    assert all(t.stacks[-1].exc_type == "torch.OutOfMemoryError" for t in traces)


def test_cut_off_traceback_still_yields_its_frames():
    [trace] = traces_of('''Traceback (most recent call last):
  File "/w/train.py", line 10, in <module>
    main()
  File "/w/train.py", line 5, in main''')
    assert trace.truncated
    assert trace.stacks[0].in_app_frame.lineno == 5


def test_noise_from_another_stream_does_not_end_a_traceback():
    [trace] = traces_of('''Traceback (most recent call last):
  File "/w/train.py", line 10, in <module>
    main()
wandb: Syncing run dazzling-sun-3
FileNotFoundError: [Errno 2] No such file or directory: 'data/test/event_17.csv'
''')
    assert trace.stacks[0].exc_type == "FileNotFoundError"


def test_a_blank_line_inside_a_chained_message_does_not_split_the_chain():
    [trace] = traces_of('''Traceback (most recent call last):
  File "/opt/conda/lib/python3.11/site-packages/huggingface_hub/utils/_http.py", line 406, in hf_raise_for_status
    response.raise_for_status()
requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: https://huggingface.co/meta-llama/Llama-3.2-1B/resolve/main/config.json

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/opt/conda/lib/python3.11/site-packages/transformers/utils/hub.py", line 403, in cached_file
    resolved_file = hf_hub_download(
huggingface_hub.errors.GatedRepoError: 401 Client Error. (Request ID: Root=1-67a1)

Cannot access gated repo for url https://huggingface.co/meta-llama/Llama-3.2-1B/resolve/main/config.json.
Access to model meta-llama/Llama-3.2-1B is restricted. You must have access to it and be authenticated to access it. Please log in.

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/workspace/tiny_lora.py", line 24, in <module>
    model = AutoModelForCausalLM.from_pretrained("meta-llama/Llama-3.2-1B")
OSError: You are trying to access a gated repo.
''')
    assert [s.exc_type for s in trace.stacks] == [
        "requests.exceptions.HTTPError", "huggingface_hub.errors.GatedRepoError", "OSError"]
    assert "Cannot access gated repo" in trace.stacks[1].message


def test_lines_after_a_final_traceback_stay_ordinary_lines():
    items = list(split_tracebacks(iter_lines(io.BytesIO(b'''Traceback (most recent call last):
  File "/w/a.py", line 1, in <module>
ValueError: bad

Killed
''' ), "t.log")))
    assert [type(i).__name__ for i in items] == ["Trace", "LogLine"]
    assert items[1].text == "Killed"


def test_a_header_after_a_prompt_on_the_same_line_starts_a_traceback():
    [trace] = traces_of('''Do you wish to run the custom code? [y/N] Traceback (most recent call last):
  File "/w/a.py", line 3, in <module>
    load()
ValueError: The repository for x/y contains custom code which must be executed to correctly load the model.
''')
    assert trace.stacks[0].in_app_frame.lineno == 3


RICH = """╭─────────────────────────────── Traceback (most recent call last) ────────────────────────────────╮
│ /home/user/proj/train.py:42 in <module>                                                          │
│                                                                                                  │
│   39 │                                                                                           │
│   40 │   model = build()                                                                         │
│ ❱ 42 │   trainer.train()                                                                         │
│   43                                                                                             │
│                                                                                                  │
│ /opt/conda/lib/python3.10/site-packages/torch/distributed/elastic/multiprocessing/errors/__init__. │
│ py:346 in wrapper                                                                                │
│                                                                                                  │
│   345 │   │   │   try:                                                                           │
│ ❱ 346 │   │   │   │   return f(*args, **kwargs)                                                  │
│   347 │   │   │   except SystemExit as se:                                                       │
│ ╭──────────────────────────────────────── locals ────────────────────────────────────────╮       │
│ │ args = ()                                                                              │       │
│ ╰────────────────────────────────────────────────────────────────────────────────────────╯       │
╰──────────────────────────────────────────────────────────────────────────────────────────────────╯
RuntimeError: expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != float
"""


def test_a_rich_boxed_traceback_gives_its_frames_and_exception():
    [trace] = traces_of(RICH)
    [stack] = trace.stacks
    assert stack.exc_type == "RuntimeError" and "c10::BFloat16" in stack.message
    assert [(f.filename, f.lineno, f.name) for f in stack.frames] == [
        ("/home/user/proj/train.py", 42, "<module>"),
        ("/opt/conda/lib/python3.10/site-packages/torch/distributed/elastic/multiprocessing/errors/__init__.py",
         346, "wrapper"),
    ]
    assert stack.in_app_frame.line == "trainer.train()"
    assert stack.frames[1].line == "return f(*args, **kwargs)"


# -- two ranks' copies of one traceback, with no rank prefix to tell them apart -------------------
# Plain `torchrun` (no --tee) or `accelerate launch`: every rank writes to the same stderr, a line
# at a time, so identical tracebacks mix; one rank is usually a few lines ahead (R1-V#69).
GRPO = [
    'Traceback (most recent call last):',
    '  File "/home/user/proj/grpo.py", line 205, in <module>',
    '    main(script_args, training_args, model_args)',
    '  File "/home/user/proj/grpo.py", line 194, in main',
    '    trainer.train()',
    f'  File "{SP}/transformers/trainer.py", line 2171, in train',
    '    return inner_training_loop(',
    '  File "/home/user/proj/trainer/grpo_trainer.py", line 361, in _prepare_inputs',
    '    ids = unwrapped_model.generate(**prompt_inputs, generation_config=self.generation_config)',
    f'  File "{SP}/transformers/generation/utils.py", line 3297, in _sample',
    '    next_tokens = torch.multinomial(probs, num_samples=1).squeeze(1)',
    'RuntimeError: probability tensor contains either `inf`, `nan` or element < 0',
]


def interleaved(first: list[str], second: list[str], lead: int) -> str:
    """`first` `lead` lines ahead, then one line of each in turn."""
    lines = first[:lead]
    rest = first[lead:]
    for index in range(max(len(rest), len(second))):
        lines += rest[index:index + 1] + second[index:index + 1]
    return "\n".join(lines) + "\n"


def test_a_second_header_inside_the_frames_is_another_rank_s_copy_not_a_cut_off_traceback():
    for lead in (0, 1, 2, 3, 6, 11):
        traces = traces_of(interleaved(GRPO, GRPO, lead))
        assert len(traces) == 2, lead
        assert not any(t.truncated for t in traces)
        for trace in traces:
            [stack] = trace.stacks
            assert stack.exc_type == "RuntimeError"
            assert stack.message == "probability tensor contains either `inf`, `nan` or element < 0"
            # The frames are read once, each with its own code line.
            assert [(f.lineno, f.line[:12]) for f in stack.frames if f.in_app] == [
                (205, "main(script_"), (194, "trainer.trai"), (361, "ids = unwrap")]


def test_the_second_rank_s_last_frames_after_the_first_exception_are_not_its_message():
    # Rank 1's header arrives just before rank 0's exception: its whole stack follows it.
    text = "\n".join(GRPO[:-1] + [GRPO[0], GRPO[-1]] + GRPO[1:]) + "\n"
    traces = traces_of(text)
    assert [t.stacks[0].message for t in traces] == [GRPO[-1].split(": ", 1)[1]] * 2
    assert all(len(t.stacks[0].frames) == 5 for t in traces)


def test_near_identical_copies_differing_in_the_message_count_twice():
    other = GRPO[:-1] + ["RuntimeError: probability tensor contains either `inf`, `nan` or element < 0 (rank 1)"]
    traces = traces_of(interleaved(GRPO, other, 2))
    assert len(traces) == 2 and all(t.stacks[0].exc_type == "RuntimeError" for t in traces)


def test_interleaved_chained_tracebacks_keep_their_chain():
    chain = '''Traceback (most recent call last):
  File "/home/user/proj/train.py", line 40, in load
    state = torch.load(path)
FileNotFoundError: [Errno 2] No such file or directory: 'ckpt/last.pt'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/home/user/proj/train.py", line 90, in <module>
    main()
  File "/home/user/proj/train.py", line 44, in load
    raise RuntimeError("cannot resume") from e
RuntimeError: cannot resume'''.split("\n")
    # (A copy that starts only after the first one's first exception is read as a new traceback:
    # its chain then mixes with the first one's. Not handled.)
    for lead in (0, 1, 2):
        traces = traces_of(interleaved(chain, chain, lead))
        assert [[s.exc_type for s in t.stacks] for t in traces] == [["FileNotFoundError", "RuntimeError"]] * 2, lead


def test_a_copy_cut_off_before_its_exception_adds_no_cut_off_traceback():
    text = interleaved(GRPO, GRPO[:6], 2) + "[2026-02-11 09:14:02,118] torch.distributed.elastic: Sending SIGTERM\n"
    [trace] = traces_of(text)
    assert not trace.truncated and trace.stacks[0].exc_type == "RuntimeError"


def test_interleaved_copies_scan_as_one_incident_seen_twice():
    from postmortem.scan import scan_text

    report = scan_text(interleaved(GRPO, GRPO, 3))
    assert [(i.signature, i.count) for i in report.incidents] == [("sampling-invalid-probs", 2)]


# -- torch.multiprocessing.spawn: the child's traceback inside the parent's exception -------------
SPAWN = f'''Traceback (most recent call last):
  File "/home/user/proj/train_ddp.py", line 100, in main
    mp.spawn(main_worker, nprocs=ngpus_per_node, args=(ngpus_per_node, args))
  File "{SP}/torch/multiprocessing/spawn.py", line 160, in join
    raise ProcessRaisedException(msg, error_index, failed_process.pid)
torch.multiprocessing.spawn.ProcessRaisedException: 

-- Process 1 terminated with the following error:
Traceback (most recent call last):
  File "{SP}/torch/multiprocessing/spawn.py", line 69, in _wrap
    fn(i, *args)
  File "/home/user/proj/train_ddp.py", line 198, in main_worker
    batch = next(loader)
KeyError: 'disparity'
'''


def test_the_child_s_traceback_in_process_raised_exception_is_the_one_read():
    [trace] = traces_of(SPAWN)
    [stack] = trace.stacks
    assert (stack.exc_type, stack.message, stack.in_app_frame.lineno) == ("KeyError", "'disparity'", 198)
    assert trace.line_number == 9


def test_torch_1_x_raised_a_bare_exception_around_the_child_s_traceback():
    old = SPAWN.replace("torch.multiprocessing.spawn.ProcessRaisedException: ", "Exception: ")
    [trace] = traces_of(old.replace("\n\n-- Process", "\n-- Process"))  # and without the blank line
    assert [s.exc_type for s in trace.stacks] == ["KeyError"]


def test_process_raised_exception_cut_off_before_the_child_s_traceback_stays():
    [trace] = traces_of(SPAWN.split("Traceback (most recent call last):\n  File \"/opt")[0])
    assert trace.stacks[-1].exc_type == "torch.multiprocessing.spawn.ProcessRaisedException"


# -- a bare exception line whose message goes on over the next lines ------------------------------
def items_of(text: str) -> list:
    return list(split_tracebacks(iter_lines(io.BytesIO(text.encode()), "t.log")))


DDP_LOGGED = """ERROR:__main__:RuntimeError: Expected to have finished reduction in the prior iteration before starting a new one. This error indicates that your module has parameters that were not used in producing loss. You can enable unused parameter detection by passing the keyword argument `find_unused_parameters=True` to `torch.nn.parallel.DistributedDataParallel`, and by 
making sure all `forward` function outputs participate in calculating loss. 
If you already have done the above, then the distributed data parallel module wasn't able to locate the output tensors in the return value of your module's `forward` function. Please include the loss function and the structure of the return value of `forward` of your module when reporting this issue (e.g. list, dict, iterable).
Parameter indices which did not receive grad for rank 0: 12 13
 In addition, you can set the environment variable TORCH_DISTRIBUTED_DEBUG to either INFO or DETAIL to print out information about which particular parameters did not receive gradient on this rank as part of this error
INFO:__main__:Saving checkpoint at 1200 iterations
"""


def test_a_logged_exception_line_carries_the_lines_that_continue_its_message():
    from postmortem.evidence import ExceptionLine, evidence_from_line

    items = items_of(DDP_LOGGED)
    assert [type(i).__name__ for i in items] == ["ExceptionLine"] + ["LogLine"] * 5
    first = items[0]
    assert isinstance(first, ExceptionLine) and len(first.continuation) == 4
    # Every line still passes through as itself, in order.
    assert [i.number for i in items] == [1, 2, 3, 4, 5, 6]
    evidence = evidence_from_line(first)
    assert "Parameter indices which did not receive grad for rank 0: 12 13" in evidence.text
    assert evidence.summary == first.text  # what a line signature reads: the line alone
    assert "Saving checkpoint" not in evidence.text


def test_a_logged_exception_s_continuation_reaches_its_signature():
    from postmortem.scan import scan_text

    [incident] = scan_text(DDP_LOGGED).incidents
    assert (incident.signature, incident.vars["indices"]) == ("ddp-unused-parameters", "12 13")
    lazy = ("RuntimeError: Failed to import transformers.models.llama.modeling_llama because of the following "
            "error (look up to see its traceback):\nNo module named 'flash_attn'\n")
    [incident] = scan_text(lazy).incidents
    assert (incident.signature, incident.vars["module"]) == ("import-error", "flash_attn")


def test_what_ends_a_bare_exception_s_message():
    endings = [
        "",                                       # a blank line
        "2026-02-11 09:14:03 INFO next record",   # a logging header: a new record
        "ValueError: another exception",
        "/w/train.py:3: UserWarning: a warning",
        "Traceback (most recent call last):",
        " 42%|████▏     | 420/1000 [00:10<00:14, 40.1it/s]",
    ]
    for ending in endings:
        items = items_of(f"RuntimeError: first line\nsecond line\n{ending}\nafter\n")
        assert getattr(items[0], "continuation", None) == ("second line",), ending
    many = "RuntimeError: x\n" + "".join(f"line {n}\n" for n in range(20))
    assert len(items_of(many)[0].continuation) == 8  # a small bound: later output stays out


def test_a_bare_exception_line_alone_stays_a_plain_line():
    items = items_of("RuntimeError: only this\n\nEpoch 2\n")
    assert type(items[0]).__name__ == "LogLine" and [i.text for i in items] == ["RuntimeError: only this", "", "Epoch 2"]


def test_the_prefilter_finds_a_continued_message_as_reading_every_line_does():
    from postmortem.knowledge import load_knowledge_base
    from postmortem.scan import Scanner, scan_bytes

    kb = load_knowledge_base(include_user=False)
    data = ("epoch 1 step 10\n" * 50 + DDP_LOGGED + "epoch 1 step 11\n" * 50).encode()
    found = [[(i.signature, i.count, i.line, i.vars) for i in scan_bytes(data, scanner=scanner).incidents]
             for scanner in (Scanner(kb, engine="re"), Scanner(kb, engine="re", every_line=True),
                             Scanner(kb, engine="re", chunk_bytes=4096))]
    assert found[0] == found[1] == found[2] and found[0][0][3]["indices"] == "12 13"


def test_a_pasted_ddp_error_under_rank_prefixes_names_its_unused_parameters():
    from pathlib import Path

    from postmortem.scan import scan

    log = Path(__file__).parent / "realworld" / "ddp-unused-parameters--detail-names-bare-message-rank-prefixed.log"
    [incident] = scan(log).incidents
    assert (incident.vars["param"], incident.vars["indices"]) == ("head.subj7.bias", "40 41 44 45 52 53 56 57")


# -- IPython 8.0-8.3: "Input In [3], in <cell line: 2>()" (enformer-pytorch#3) ---------------------
def test_ipython_8_0_input_in_frames_keep_the_cell_s_line():
    for frame_line in ("Input In [3], in <cell line: 2>()", "Input In [3], in <module>"):
        [trace] = traces_of(f'''---------------------------------------------------------------------------
AttributeError                            Traceback (most recent call last)
{frame_line}
      1 from enformer_pytorch import Enformer
----> 2 model = Enformer.from_pretrained("EleutherAI/enformer-preview")

AttributeError: type object 'Enformer' has no attribute 'from_pretrained'
''')
        frame = trace.stacks[0].in_app_frame
        assert (frame.filename, frame.lineno, frame.name, frame.line) == (
            "Input In[3]", 2, "<module>", 'model = Enformer.from_pretrained("EleutherAI/enformer-preview")'), frame_line


def test_ipython_8_0_a_function_defined_in_a_cell_then_library_frames():
    [trace] = traces_of(f'''RuntimeError                              Traceback (most recent call last)
Input In [7], in <cell line: 1>()
----> 1 train(model, loader)

Input In [5], in train(model, loader)
      3 for x, y in loader:
----> 4     out = model(x)

File {SP}/torch/nn/modules/module.py:1110, in Module._call_impl(self, *input, **kwargs)
-> 1110     return forward_call(*input, **kwargs)

RuntimeError: mat1 and mat2 shapes cannot be multiplied (64x128 and 256x64)
''')
    [stack] = trace.stacks
    assert [(f.filename, f.lineno, f.name, f.in_app) for f in stack.frames] == [
        ("Input In[7]", 1, "<module>", True), ("Input In[5]", 4, "train", True),
        (f"{SP}/torch/nn/modules/module.py", 1110, "Module._call_impl", False)]
    assert stack.in_app_frame.line == "out = model(x)"


def test_ipython_5_header_pasted_without_its_padding():
    [trace] = traces_of('''AttributeErrorTraceback (most recent call last)
<ipython-input-13-35c78fe46a92> in <module>()
----> 1 ex.run()

/home/user/.local/lib/python2.7/site-packages/sacred/experiment.pyc in run(self, command_name)
--> 198         run()

AttributeError: 'NoneType' object has no attribute 'run'
''')
    [stack] = trace.stacks
    assert stack.exc_type == "AttributeError"
    assert [f.name for f in stack.frames] == ["<module>", "run"]
    assert stack.in_app_frame.line == "ex.run()"


# -- other headers ---------------------------------------------------------------------------------
def test_sacred_s_filtered_traceback_headers():
    for header in ("Traceback (most recent calls WITHOUT Sacred internals):",
                   "Traceback (most recent calls WITHOUT sacred internals):",  # sacred < 0.7.3
                   "Exception originated from within Sacred.\nTraceback (most recent calls):"):
        [trace] = traces_of(f'''ERROR - FSL training - Failed after 0:04:19!
{header}
  File "/home/user/proj/src/main.py", line 118, in main
    if (epoch) % trainer.meta_val_interval == 0:
AttributeError: 'Trainer' object has no attribute 'meta_val_interval'
''')
        [stack] = trace.stacks
        assert (stack.exc_type, stack.in_app_frame.lineno) == ("AttributeError", 118), header


def test_a_most_recent_call_first_dump_is_no_exception_traceback():
    # faulthandler (older Pythons) and gdb's py-bt dump a live stack, innermost first, with no
    # exception after it: a crash or hang report, not a raised exception, so its lines stay lines
    # (the segfault signature reads "Fatal Python error: ..." around them).
    items = items_of('''Fatal Python error: Segmentation fault

Traceback (most recent call first):
  File "/home/user/proj/train.py", line 88 in forward
  File "/home/user/proj/train.py", line 120 in <module>
''')
    assert not any(isinstance(i, Trace) for i in items)


# -- torch's DataLoader re-raise: the worker's traceback inside the exception's message ------------
OLD_LOADER = f'''Traceback (most recent call last):
  File "/home/user/proj/train.py", line 412, in train_model
    for batch_i, batch in enumerate(train_data_loader):
  File "{SP}/torch/utils/data/dataloader.py", line 336, in __next__
    return self._process_next_batch(batch)
  File "{SP}/torch/utils/data/dataloader.py", line 357, in _process_next_batch
    raise batch.exc_type(batch.exc_msg)
RuntimeError: Traceback (most recent call last):
  File "{SP}/torch/utils/data/dataloader.py", line 106, in _worker_loop
    samples = collate_fn([dataset[i] for i in batch_indices])
  File "/home/user/proj/loader.py", line 77, in collate
    x = torch.LongTensor(x).cuda()
RuntimeError: Cannot initialize CUDA without ATen_cuda library. PyTorch splits its backend into two shared libraries: a CPU library and a CUDA library; this error has occurred because you are trying to use some CUDA functionality, but the CUDA library has not been loaded by the dynamic linker for some reason.
'''


def test_torch_0_4_re_raised_a_worker_s_traceback_as_the_message():
    from postmortem.evidence import evidence_from_trace

    [trace] = traces_of(OLD_LOADER)
    worker, wrapper = trace.stacks
    assert worker.message.startswith("Cannot initialize CUDA without ATen_cuda library.")
    assert (worker.in_app_frame.filename, worker.in_app_frame.lineno) == ("/home/user/proj/loader.py", 77)
    assert (wrapper.exc_type, wrapper.message, wrapper.is_cause) == ("RuntimeError", "", True)
    assert wrapper.in_app_frame.lineno == 412
    root = evidence_from_trace(trace, "t.log", 0)[0]
    assert root.summary.startswith("RuntimeError: Cannot initialize CUDA") and root.location.lineno == 77


NEW_LOADER = f'''Traceback (most recent call last):
  File "/home/user/proj/train.py", line 88, in <module>
    for step, batch in enumerate(train_loader):
  File "{SP}/torch/utils/data/dataloader.py", line 1371, in _process_data
    data.reraise()
  File "{SP}/torch/_utils.py", line 644, in reraise
    raise exception
FileNotFoundError: Caught FileNotFoundError in DataLoader worker process 0.
Original Traceback (most recent call last):
  File "{SP}/torch/utils/data/_utils/worker.py", line 308, in _worker_loop
    data = fetcher.fetch(index)
  File "/home/user/proj/data.py", line 41, in __getitem__
    img = Image.open(self.paths[idx])
  File "{SP}/PIL/Image.py", line 3243, in open
    fp = builtins.open(filename, "rb")
FileNotFoundError: [Errno 2] No such file or directory: '/data/imgs/000123.jpg'

Epoch 2 starts
'''


def test_the_original_traceback_of_a_worker_is_the_root_cause():
    from postmortem.scan import scan_text

    [trace] = traces_of(NEW_LOADER)
    assert [(s.exc_type, s.message.split("\n")[0]) for s in trace.stacks] == [
        ("FileNotFoundError", "[Errno 2] No such file or directory: '/data/imgs/000123.jpg'"),
        ("FileNotFoundError", "Caught FileNotFoundError in DataLoader worker process 0."),
    ]
    [incident] = scan_text(NEW_LOADER).incidents
    # (The scan redacts the home folder: "~/proj/data.py".)
    assert (incident.signature, incident.location.filename[-12:], incident.location.lineno) == (
        "file-not-found", "proj/data.py", 41)


def test_a_worker_error_in_library_code_points_at_the_training_loop():
    # default_collate failing has no frame of the user's in the worker: the loop that asked is shown.
    text = NEW_LOADER.replace(
        '  File "/home/user/proj/data.py", line 41, in __getitem__\n    img = Image.open(self.paths[idx])\n', "")
    from postmortem.scan import scan_text

    [incident] = scan_text(text).incidents
    assert (incident.location.filename[-13:], incident.location.lineno) == ("proj/train.py", 88)


def test_dataparallel_s_caught_in_replica_is_read_the_same_way():
    text = NEW_LOADER.replace("in DataLoader worker process 0.", "in replica 1 on device 1.")
    [trace] = traces_of(text)
    assert trace.stacks[-1].message == "Caught FileNotFoundError in replica 1 on device 1."
    assert trace.stacks[0].in_app_frame.lineno == 41


# -- a thread that died, then the main thread that noticed (DONERF#7) -------------------------------
PIN_MEMORY = f'''epoch=21         loss=0.13672528:   0%|          | 20/300001 [00:03<7:07:22, 11.70it/s]
Exception in thread Thread-1 (_pin_memory_loop):
Traceback (most recent call last):
  File "/opt/conda/lib/python3.10/threading.py", line 1016, in _bootstrap_inner
    self.run()
  File "{SP}/torch/utils/data/_utils/pin_memory.py", line 28, in _pin_memory_loop
    idx, data = r
ValueError: not enough values to unpack (expected 2, got 0)
epoch=21         loss=0.13672528:   0%|          | 21/300001 [00:08<34:03:39,  2.45it/s]
Traceback (most recent call last):
  File "/home/user/proj/train.py", line 344, in <module>
    main()
  File "{SP}/torch/utils/data/dataloader.py", line 1142, in _get_data
    raise RuntimeError('Pin memory thread exited unexpectedly')
RuntimeError: Pin memory thread exited unexpectedly
'''


def test_the_pin_memory_thread_s_error_is_the_one_failure_reported():
    from postmortem.scan import scan_text

    assert [(i.signature, i.evidence) for i in scan_text(PIN_MEMORY).incidents] == [
        ("unknown", "ValueError: not enough values to unpack (expected 2, got 0)")]
    # Without the thread's traceback, the main thread's error is all there is: it is reported.
    main_only = PIN_MEMORY.split("epoch=21         loss=0.13672528:   0%|          | 21/")[1]
    assert [i.signature for i in scan_text(main_only).incidents] == ["pin-memory-thread-died"]


def test_an_environments_console_script_is_not_the_users_code():
    from postmortem.tracebacks import is_in_app

    assert not is_in_app("/home/user/env/bin/torchrun")  # pip's entry point: no .py
    assert not is_in_app(r"C:\Users\me\env\Scripts\accelerate-script.py")
    assert is_in_app("/home/user/proj/bin/train.py")  # a project's own bin/ script is theirs
