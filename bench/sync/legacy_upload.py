"""One-shot uploader of the replaced setup: a fresh process and client per file."""

import os
import sys
from pathlib import Path

import boto3

path = Path(sys.argv[1])
root = Path(os.environ["LEGACY_ROOT"])
client = boto3.client(
    "s3",
    endpoint_url=os.environ["R2_ENDPOINT"],
    aws_access_key_id=os.environ["R2_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["R2_SECRET_ACCESS_KEY"],
    region_name="auto",
)
key = os.environ.get("R2_PREFIX", "") + path.relative_to(root).as_posix()
client.upload_file(str(path), os.environ["R2_BUCKET"], key)
