"""Test helper for restorecheck's S3 tests: drives a moto_server (IAM enforced) with boto3.

Usage: moto_ctl.py ENDPOINT COMMAND [ARGS...]; credentials come from the environment
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), never from argv. Results are JSON on stdout.

  setup BUCKET            the unauthenticated setup calls (exactly SETUP_CALLS of them): users
                          `admin` (s3:*) and `reader` (ListBucket + GetObject on BUCKET only),
                          their access keys, the bucket. Prints the keys.
  upload-dir BUCKET DIR PREFIX
  upload-file BUCKET FILE KEY
  snapshot BUCKET PREFIX  {key: [size, etag]} for every key under PREFIX
  probe BUCKET            with the reader's keys: which of get/list/put/delete are denied
                          (needs the object probe/existing)
  get BUCKET KEY          {"size": n} or {"error": code}: what these credentials may read
"""

import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

# Must equal the number of requests `setup` sends (the server's INITIAL_NO_AUTH_ACTION_COUNT).
SETUP_CALLS = 7


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def reader_policy(bucket):
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"},
        ],
    }


ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


def setup(endpoint, bucket):
    iam = client("iam", endpoint)
    keys = {}
    # 1-6: two users, their inline policies and access keys.
    for user, policy in (("admin", ADMIN_POLICY), ("reader", reader_policy(bucket))):
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=f"{user}-s3", PolicyDocument=json.dumps(policy))
        k = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = {"access_key_id": k["AccessKeyId"], "secret_access_key": k["SecretAccessKey"]}
    # 7: the bucket.
    client("s3", endpoint).create_bucket(Bucket=bucket)
    return keys


def denied(call):
    try:
        call()
        return False
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        if code in ("AccessDenied", "403"):
            return True
        raise


def main():
    endpoint, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if cmd == "setup":
        out = setup(endpoint, args[0])
    elif cmd == "upload-dir":
        bucket, root, prefix = args
        s3 = client("s3", endpoint)
        n = 0
        for d, _, files in os.walk(root):
            for f in sorted(files):
                p = os.path.join(d, f)
                key = "/".join(x for x in (prefix.strip("/"), os.path.relpath(p, root)) if x)
                s3.upload_file(p, bucket, key)
                n += 1
        out = {"uploaded": n}
    elif cmd == "upload-file":
        bucket, path, key = args
        client("s3", endpoint).upload_file(path, bucket, key)
        out = {"uploaded": 1}
    elif cmd == "snapshot":
        bucket, prefix = args
        s3 = client("s3", endpoint)
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"]] = [o["Size"], o["ETag"].strip('"')]
    elif cmd == "probe":
        bucket = args[0]
        s3 = client("s3", endpoint)
        out = {
            "list_denied": denied(lambda: s3.list_objects_v2(Bucket=bucket)),
            "get_denied": denied(lambda: s3.get_object(Bucket=bucket, Key="probe/existing")["Body"].read()),
            "put_denied": denied(lambda: s3.put_object(Bucket=bucket, Key="probe/new", Body=b"x")),
            "delete_denied": denied(lambda: s3.delete_object(Bucket=bucket, Key="probe/existing")),
        }
    elif cmd == "get":
        bucket, key = args
        try:
            out = {"size": len(client("s3", endpoint).get_object(Bucket=bucket, Key=key)["Body"].read())}
        except ClientError as e:
            out = {"error": e.response.get("Error", {}).get("Code")}
        except Exception as e:  # connection cut, reset, incomplete body
            out = {"error": type(e).__name__}
    else:
        sys.exit(f"unknown command {cmd}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
