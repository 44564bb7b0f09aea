"""The reader: bytes in, clean numbered lines out, whatever the terminal and the platform did."""
import gzip
import io
import time

from postmortem.reader import iter_lines, read_log


def lines_of(data: bytes):
    return list(iter_lines(io.BytesIO(data), "test.log"))


def test_ansi_colours_are_removed():
    [line] = lines_of(b"\x1b[1;31mRuntimeError\x1b[0m: boom\n")
    assert line.text == "RuntimeError: boom"


def test_progress_bar_rewrites_keep_only_the_last_frame():
    bar = b"".join(b"\r %3d%%|#   | %d/100 [00:0%d<00:10, 9.1it/s]" % (i, i, i % 10) for i in range(100))
    lines = lines_of(bar + b"\n")
    assert len(lines) == 1
    assert "99/100" in lines[0].text


def test_error_glued_after_a_progress_bar_is_its_own_line():
    data = b"\r 5%|5    | 50/1000 [00:01<00:30, 3.2it/s]Traceback (most recent call last):\n"
    texts = [line.text for line in lines_of(data)]
    assert texts == [" 5%|5    | 50/1000 [00:01<00:30, 3.2it/s]", "Traceback (most recent call last):"]


def test_text_between_bar_frames_is_kept():
    data = b"\r 1%|1 | 1/100 [00:00<00:10]\r{'loss': 0.5, 'epoch': 0.01}\r 2%|2 | 2/100 [00:00<00:10]\n"
    texts = [line.text for line in lines_of(data)]
    assert "{'loss': 0.5, 'epoch': 0.01}" in texts


def test_rank_prefix_becomes_the_stream_and_line_numbers_are_physical():
    lines = lines_of(b"hello\n[rank3]:   File \"a.py\", line 1, in f\n[default0]:Killed\n")
    assert [(l.number, l.stream, l.text) for l in lines] == [
        (1, "", "hello"), (2, "rank3", '  File "a.py", line 1, in f'), (3, "default0", "Killed")]


def test_logging_headers_are_removed_for_matching():
    lines = lines_of(
        b"2026-02-06 12:00:01,123 - INFO - __main__ - epoch 3 step 1200 loss=0.4321\n"
        b"[2026-02-06 12:00:01,123] [INFO] [engine.py:12:forward] deepspeed says hi\n"
        b"02/06/2026 12:00:01 - WARNING - transformers.trainer - careful\n"
    )
    assert [l.text for l in lines] == ["epoch 3 step 1200 loss=0.4321", "deepspeed says hi", "careful"]
    assert all(l.header for l in lines)


def test_a_doubled_rank_tag_is_one_stream():
    lines = lines_of(b"[rank1]:[rank1]: Traceback (most recent call last):\n[rank1]:[rank1]:   File \"a.py\"\n")
    assert [(l.stream, l.text) for l in lines] == [
        ("rank1", "Traceback (most recent call last):"), ("rank1", '  File "a.py"')]


def test_glog_headers_of_pytorch_and_c10d_are_removed():
    lines = lines_of(
        b"W1024 01:17:10.936000 1403 torch/_dynamo/convert_frame.py:1009] [0/0] torch._dynamo hit it\n"
        b"[rank0]:E0206 12:00:01.123456 12345 ProcessGroupNCCL.cpp:1234] [Rank 0] Watchdog caught it\n"
        b"W1024 is not a header\n"
    )
    assert [(l.stream, l.text) for l in lines] == [
        ("", "[0/0] torch._dynamo hit it"), ("rank0", "[Rank 0] Watchdog caught it"), ("", "W1024 is not a header")]


def test_vllm_logger_headers_are_removed():
    lines = lines_of(
        b"ERROR 08-14 11:02:44 worker_base.py:464] torch.OutOfMemoryError: CUDA out of memory.\n"
        b"INFO 05-01 12:00:00 [core.py:58] Initializing a V1 LLM engine\n"
        b"(VllmWorkerProcess pid=2314) ERROR 08-14 11:02:44 multiproc_worker_utils.py:120] Traceback (most recent call last):\n"
    )
    assert [(l.stream, l.text) for l in lines] == [
        ("", "torch.OutOfMemoryError: CUDA out of memory."), ("", "Initializing a V1 LLM engine"),
        ("VllmWorkerProcess-2314", "Traceback (most recent call last):")]
    [line] = lines_of(b"(VllmWorker rank=5 pid=3073)   File \"/opt/venv/lib/python3.12/site-packages/vllm/x.py\"\n")
    assert (line.stream, line.text) == ("VllmWorker-3073", '  File "/opt/venv/lib/python3.12/site-packages/vllm/x.py"')


def test_docker_compose_service_column_and_fastchat_logger():
    lines = lines_of(b"model-worker-1  | 2024-09-26 06:12:44 | ERROR | stderr | Traceback (most recent call last):\n"
                     b"| epoch 027 | valid on 'valid' subset\n")
    assert [(l.stream, l.text) for l in lines] == [
        ("model-worker-1", "Traceback (most recent call last):"), ("", "| epoch 027 | valid on 'valid' subset")]


def test_the_host_pdsh_puts_before_a_traceback_becomes_the_stream_not_a_metric_name():
    lines = lines_of(b"gpu-node-2: Traceback (most recent call last):\ngpu-node-2:   File \"t.py\", line 1\n"
                     b"gpu-node-2: RuntimeError: boom\ntop1: 0.93\nflood.Case0Error: requests.HTTPError: 401\n")
    assert [(l.stream, l.text) for l in lines] == [
        ("gpu-node-2", "Traceback (most recent call last):"), ("gpu-node-2", '  File "t.py", line 1'),
        ("gpu-node-2", "RuntimeError: boom"), ("", "top1: 0.93"), ("", "flood.Case0Error: requests.HTTPError: 401")]


def test_accelerates_stderr_tag_is_a_stream():
    lines = lines_of(b"stderr: Traceback (most recent call last):\nstderr:   File \"t.py\", line 5, in <module>\n")
    assert [(l.stream, l.text) for l in lines] == [
        ("stderr", "Traceback (most recent call last):"), ("stderr", '  File "t.py", line 5, in <module>')]


def test_a_log_quoted_in_an_issue_keeps_its_own_indentation():
    lines = lines_of(b"> Traceback (most recent call last):\n>   File \"a.py\", line 1\n> > RuntimeError: x\n")
    assert [l.text for l in lines] == ["Traceback (most recent call last):", '  File "a.py", line 1', "RuntimeError: x"]


def test_an_exception_line_wrapped_in_markdown_is_unwrapped():
    lines = lines_of(b"**RuntimeError: CUDA error: device-side assert triggered**\n`ValueError: bad`\n**note** this\n")
    assert [l.text for l in lines] == ["RuntimeError: CUDA error: device-side assert triggered", "ValueError: bad",
                                       "**note** this"]


def test_more_logging_headers_are_removed():
    lines = lines_of(
        b"2026-02-11 09:14:02,118 - train - ERROR - RuntimeError: boom\n"
        b"02/11 09:14:02 - mmengine - ERROR - RuntimeError: boom\n"
        b"2024-05-02 10:11:13.001 | ERROR    | __main__:run:42 - RuntimeError: boom\n"
        b"[02/11 09:14:02 d2.engine.train_loop]: RuntimeError: boom\n"
        b"2026-02-11 09:14:02,118 - loss 0.5 - done\n"
    )
    assert [l.text for l in lines] == ["RuntimeError: boom"] * 4 + ["loss 0.5 - done"]


def test_gbk_log_is_readable_not_mojibake():
    data = "开始训练\nFileNotFoundError: [Errno 2] No such file or directory: '数据/训练集/event_17.csv'\n".encode("gbk")
    texts = [l.text for l in lines_of(data)]
    assert texts[0] == "开始训练"
    assert "数据/训练集/event_17.csv" in texts[1]


def test_undecodable_bytes_do_not_crash():
    lines = lines_of(b"\xff\xfe\x00garbage\x80\x81\nok\n")
    assert lines[-1].text == "ok"


def test_utf16_from_powershell_is_read(tmp_path):
    path = tmp_path / "run.log"
    text = "step 1 loss=0.5\r\n 10%|#  | 1/10 [00:01<00:09]\r 20%|## | 2/10 [00:02<00:08]\r\nKeyError: 0\r\n"
    path.write_bytes(text.encode("utf-16"))  # with its byte-order mark, as PowerShell 5 writes it
    assert [l.text for l in read_log(path)] == ["step 1 loss=0.5", " 20%|## | 2/10 [00:02<00:08]", "KeyError: 0"]


def test_gzip_is_read_transparently(tmp_path):
    path = tmp_path / "run.log.gz"
    path.write_bytes(gzip.compress(b"Killed\n"))
    assert [l.text for l in read_log(path)] == ["Killed"]


def test_a_long_line_without_newline_is_read_in_linear_time():
    data = b"x" * (50 << 20)
    start = time.perf_counter()
    lines = lines_of(data)
    elapsed = time.perf_counter() - start
    assert sum(len(l.text) for l in lines) == len(data)
    # Not a timing assertion on speed, a guard against a quadratic blow-up (minutes, not seconds).
    assert elapsed < 60
