#!/usr/bin/env bash
# Copies every upstream image a stack runs into the account's ECR mirror (`images.mirror`),
# once per image and tag: it creates each mirror repository that is missing (tags
# IMMUTABLE, scan on push, KMS encryption) and copies the image with `crane copy`, which
# keeps the manifest and so its digest. Safe to run again: a tag already mirrored is skipped
# (an immutable tag cannot be overwritten anyway).
#
#   STACK=production stacks/bootstrap/mirror-images.sh
#
# Needs the AWS CLI (credentials of the stack's account), crane and swarmstack (.venv). The
# program then reads each digest from ECR at preview: nothing else records them.
set -euo pipefail

: "${STACK:?set STACK=<stack name>}"
SWARMSTACK=${SWARMSTACK:-.venv/bin/swarmstack}
ACCOUNT=$(aws sts get-caller-identity --query Account --output text)
REGION=$(sed -n 's/^ *aws:region: *//p' "stacks/Pulumi.$STACK.yaml" | tr -d '"')
: "${REGION:?stacks/Pulumi.$STACK.yaml sets no aws:region}"
# Unset: ECR's AWS managed key (aws/ecr); set a key ARN to encrypt with your own.
KMS_KEY=${MIRROR_KMS_KEY:-}
REGISTRY="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com"

aws ecr get-login-password --region "$REGION" | crane auth login "$REGISTRY" -u AWS --password-stdin

encryption="encryptionType=KMS"
if [ -n "$KMS_KEY" ]; then
  encryption="$encryption,kmsKey=$KMS_KEY"
fi

"$SWARMSTACK" images "$STACK" --account "$ACCOUNT" --format tsv |
  while IFS=$'\t' read -r source mirror repository; do
    if ! aws ecr describe-repositories --region "$REGION" --repository-names "$repository" \
      >/dev/null 2>&1; then
      echo "create repository $repository"
      aws ecr create-repository --region "$REGION" --repository-name "$repository" \
        --image-tag-mutability IMMUTABLE \
        --image-scanning-configuration scanOnPush=true \
        --encryption-configuration "$encryption" >/dev/null
    fi
    if crane digest "$mirror" >/dev/null 2>&1; then
      echo "already mirrored $mirror"
    else
      echo "copy $source -> $mirror"
      crane copy "$source" "$mirror"
    fi
  done
