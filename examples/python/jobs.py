#!/usr/bin/python3
"""Background jobs from Python: Enqueue a job, then WatchJob its events until it ends, resuming once midway.

Needs Debian's python3-grpcio and python3-grpc-tools (see client.py, whose stub generation it shares).

    /usr/bin/python3 examples/python/jobs.py --target 127.0.0.1:8080 --backend echo --json '{"hi": 1}' --key order-1

Prints one JSON object per line: the Enqueue answer, each event (state or chunk), then the job as GetJob
returns it. A second run with the same --key prints the same job_id with "created": false.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from client import load_stubs  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="127.0.0.1:8080", help="host:port of the dispatcher (h2c)")
    p.add_argument("--backend", default="echo")
    p.add_argument("--json", default='{"hello": "python"}', help="the job's payload, a JSON value")
    p.add_argument("--key", default="", help="idempotency key: the same key gives the same job")
    p.add_argument("--stubs", default=os.path.join(HERE, "stubs"), help="where generated stubs are kept")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline of each call, in seconds")
    args = p.parse_args()

    import grpc
    from google.protobuf import json_format, struct_pb2

    pb, pb_grpc = load_stubs(args.stubs)
    state_name = lambda v: pb.JobState.Name(v)  # noqa: E731
    with grpc.insecure_channel(args.target) as channel:
        stub = pb_grpc.DispatcherServiceStub(channel)
        try:
            request = pb.SubmitRequest(backend=args.backend, json=json_format.ParseDict(json.loads(args.json), struct_pb2.Value()))
            res = stub.Enqueue(pb.EnqueueRequest(request=request, idempotency_key=args.key), timeout=args.timeout)
            print(json.dumps({"job_id": res.job_id, "created": res.created}), flush=True)
            # Read the first event, then resume after it as a client that lost its stream would.
            last = ""
            for e in stub.WatchJob(pb.WatchJobRequest(job_id=res.job_id), timeout=args.timeout):
                print(json.dumps(event(e, state_name)), flush=True)
                last = e.event_id
                break
            for e in stub.WatchJob(pb.WatchJobRequest(job_id=res.job_id, after_event_id=last), timeout=args.timeout):
                print(json.dumps(event(e, state_name)), flush=True)
            job = stub.GetJob(pb.GetJobRequest(job_id=res.job_id), timeout=args.timeout)
            print(json.dumps({
                "state": state_name(job.state),
                "worker_id": job.worker_id,
                "attempts": job.attempts,
                "payload": json_format.MessageToDict(job.result.json) if job.result.WhichOneof("payload") == "json" else None,
            }), flush=True)
        except grpc.RpcError as e:
            print(json.dumps({"error": e.code().name, "message": e.details()}), flush=True)
            sys.exit(1)


def event(e, state_name):
    out = {"event_id": e.event_id}
    kind = e.WhichOneof("event")
    if kind == "state":
        out["state"] = state_name(e.state)
    elif kind == "chunk":
        out["text"] = e.chunk.text
    return out


if __name__ == "__main__":
    main()
