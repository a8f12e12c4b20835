#!/usr/bin/python3
"""A Python client of DispatcherService: stubs generated from the proto, one Submit (or SubmitStream), a few WorkerMetrics.

Needs Debian's python3-grpcio and python3-grpc-tools, which belong to the system interpreter
(/usr/bin/python3), not to a pyenv or venv python3 earlier on PATH.

    /usr/bin/python3 examples/python/client.py --target 127.0.0.1:8080 --backend echo --json '{"hi": 1}'

    /usr/bin/python3 examples/python/client.py --backend echo --stream --meta stream_chunks=3 --json '"hello stream"'

Prints one JSON object per line: the Submit answer (with --stream: one line per SubmitStream event,
started / chunk / done), then one line per WorkerMetrics message.
A failed call prints {"error": "<STATUS>", "message": ...} and exits 1.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "..", "proto")
PROTO = "dispatcher/v1/dispatcher.proto"


def load_stubs(out_dir):
    """Generates dispatcher_pb2 / dispatcher_pb2_grpc from the proto into out_dir (again when the proto is newer)."""
    import grpc_tools
    from grpc_tools import protoc

    target = os.path.join(out_dir, "dispatcher", "v1", "dispatcher_pb2_grpc.py")
    source = os.path.join(PROTO_ROOT, PROTO)
    if not os.path.exists(target) or os.path.getmtime(target) < os.path.getmtime(source):
        os.makedirs(out_dir, exist_ok=True)
        # The well-known types (Duration, Value, Timestamp) ship inside grpc_tools.
        well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        code = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", PROTO])
        if code != 0:
            sys.exit(f"protoc failed with {code} on {source}")
    sys.path.insert(0, out_dir)
    from dispatcher.v1 import dispatcher_pb2, dispatcher_pb2_grpc

    return dispatcher_pb2, dispatcher_pb2_grpc


def ms(duration):
    return duration.seconds * 1000 + duration.nanos / 1e6


def submit(stub, request, args, metadata):
    from google.protobuf import json_format

    res = stub.Submit(request, timeout=args.timeout, metadata=metadata)
    print(json.dumps({
        "worker_id": res.worker_id,
        "affinity": res.affinity,
        "queue_wait_ms": ms(res.queue_wait),
        "execution_ms": ms(res.execution),
        "payload": json_format.MessageToDict(res.json) if res.WhichOneof("payload") == "json" else None,
    }), flush=True)


def submit_stream(stub, request, args, metadata):
    """SubmitStream: Started opens each attempt, Chunks carry the answer as it is made, Done closes the stream."""
    from google.protobuf import json_format

    for event in stub.SubmitStream(request, timeout=args.timeout, metadata=metadata):
        kind = event.WhichOneof("event")
        if kind == "started":
            print(json.dumps({"started": event.started.worker_id, "attempt": event.started.attempt, "affinity": event.started.affinity}), flush=True)
        elif kind == "chunk":
            c = event.chunk
            line = {"chunk": c.text} if c.text else {"chunk": json_format.MessageToDict(c.json) if c.WhichOneof("payload") == "json" else c.binary.hex()}
            print(json.dumps(line), flush=True)
        elif kind == "done":
            d = event.done
            print(json.dumps({"done": True, "attempts": d.attempts, "chunks": d.chunks, "time_to_first_chunk_ms": ms(d.time_to_first_chunk), "metadata": dict(d.metadata)}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="127.0.0.1:8080", help="host:port of the dispatcher (h2c)")
    p.add_argument("--backend", default="echo")
    p.add_argument("--session", default="", help="session id for affinity; empty: none")
    p.add_argument("--json", default='{"hello": "python"}', help="the job's payload, a JSON value")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="job metadata, e.g. delay_ms=100")
    p.add_argument("--stream", action="store_true", help="call SubmitStream and print each event as it arrives")
    p.add_argument("--metrics", type=int, default=2, help="WorkerMetrics messages to print after the Submit")
    p.add_argument("--token", default=os.environ.get("DISPATCHER_TOKEN", ""), help="bearer token when auth is on (default $DISPATCHER_TOKEN)")
    p.add_argument("--stubs", default=os.path.join(HERE, "stubs"), help="where generated stubs are kept")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline of each call, in seconds")
    args = p.parse_args()

    import grpc
    from google.protobuf import duration_pb2, json_format, struct_pb2

    pb, pb_grpc = load_stubs(args.stubs)
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    with grpc.insecure_channel(args.target) as channel:
        stub = pb_grpc.DispatcherServiceStub(channel)
        request = pb.SubmitRequest(
            backend=args.backend,
            session_id=args.session,
            json=json_format.ParseDict(json.loads(args.json), struct_pb2.Value()),
            metadata=dict(m.split("=", 1) for m in args.meta),
        )
        try:
            if args.stream:
                submit_stream(stub, request, args, metadata)
            else:
                submit(stub, request, args, metadata)

            stream = stub.WorkerMetrics(
                pb.WorkerMetricsRequest(interval=duration_pb2.Duration(nanos=200_000_000)), timeout=args.timeout, metadata=metadata
            )
            for i, m in enumerate(stream):
                print(json.dumps({
                    "time": m.time.ToJsonString(),
                    "workers": [
                        {
                            "worker_id": w.worker_id,
                            "state": pb.WorkerState.Name(w.state),
                            "inflight": w.inflight,
                            "queue_len": w.queue_len,
                            "completed": w.completed,
                            "sessions": w.sessions,
                        }
                        for w in m.workers
                    ],
                }), flush=True)
                if i + 1 >= args.metrics:
                    stream.cancel()
                    break
        except grpc.RpcError as e:
            print(json.dumps({"error": e.code().name, "message": e.details()}), flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
