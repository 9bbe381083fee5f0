#!/usr/bin/env bash
# Creates what the workflows' Pulumi runs need, once per AWS account: the S3 state backend
# (TLS only), the KMS key that encrypts stack secrets, GitHub's OIDC provider, and two
# roles the workflows assume (no stored keys). Safe to run again: it creates only what is
# missing and puts every policy back as this folder writes it.
#
#   GITHUB_REPO=owner/name stacks/bootstrap/bootstrap.sh
#
# A script rather than a Pulumi program: the backend holds every stack's state, so it cannot
# hold its own; each call below is an idempotent AWS CLI call, reviewable line by line.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

: "${GITHUB_REPO:?set GITHUB_REPO=owner/name}"
REGION=${AWS_REGION:-us-east-1}
ACCOUNT=$(aws sts get-caller-identity --query Account --output text)
BUCKET=${STATE_BUCKET:-swarmstack-pulumi-state-$ACCOUNT}
ALIAS=${KMS_ALIAS:-alias/swarmstack-pulumi}
DEPLOY_ROLE=${DEPLOY_ROLE:-swarmstack-deploy}
READ_ROLE=${READ_ROLE:-swarmstack-read}
OIDC_HOST=token.actions.githubusercontent.com
OIDC_ARN="arn:aws:iam::$ACCOUNT:oidc-provider/$OIDC_HOST"

echo "state bucket s3://$BUCKET ($REGION)"
if ! aws s3api head-bucket --bucket "$BUCKET" 2>/dev/null; then
  if [ "$REGION" = us-east-1 ]; then
    aws s3api create-bucket --bucket "$BUCKET" --region "$REGION" >/dev/null
  else
    aws s3api create-bucket --bucket "$BUCKET" --region "$REGION" \
      --create-bucket-configuration "LocationConstraint=$REGION" >/dev/null
  fi
fi
aws s3api put-public-access-block --bucket "$BUCKET" --public-access-block-configuration \
  BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
# Versioning keeps every earlier state file: a bad update can be rolled back.
aws s3api put-bucket-versioning --bucket "$BUCKET" --versioning-configuration Status=Enabled

echo "secrets key $ALIAS"
if ! KEY_ID=$(aws kms describe-key --key-id "$ALIAS" --region "$REGION" \
  --query KeyMetadata.KeyId --output text 2>/dev/null); then
  KEY_ID=$(aws kms create-key --region "$REGION" --description "swarmstack Pulumi secrets" \
    --query KeyMetadata.KeyId --output text)
  aws kms create-alias --region "$REGION" --alias-name "$ALIAS" --target-key-id "$KEY_ID"
fi
aws kms enable-key-rotation --region "$REGION" --key-id "$KEY_ID"
KEY_ARN="arn:aws:kms:$REGION:$ACCOUNT:key/$KEY_ID"
aws s3api put-bucket-encryption --bucket "$BUCKET" --server-side-encryption-configuration \
  "{\"Rules\":[{\"ApplyServerSideEncryptionByDefault\":{\"SSEAlgorithm\":\"aws:kms\",\"KMSMasterKeyID\":\"$KEY_ARN\"},\"BucketKeyEnabled\":true}]}"

render() { # a policy document of this folder with this account's names filled in
  local doc
  doc=$(<"$HERE/$1")
  doc=${doc//@ACCOUNT@/"$ACCOUNT"}
  doc=${doc//@REGION@/"$REGION"}
  doc=${doc//@BUCKET@/"$BUCKET"}
  doc=${doc//@KEY_ARN@/"$KEY_ARN"}
  doc=${doc//@ALIAS@/"$ALIAS"}
  printf '%s' "$doc"
}

validate() { # IAM Access Analyzer's policy check: an error stops the run, a security
  # warning is shown (it may be one the policy accepts on purpose, such as a role/* it
  # scopes by tag and condition instead)
  local type=$1 doc=$2 findings
  shift 2
  findings=$(aws accessanalyzer validate-policy --region "$REGION" --policy-type "$type" "$@" \
    --policy-document "$doc" --output text \
    --query "findings[?findingType=='ERROR' || findingType=='SECURITY_WARNING'].[findingType,issueCode,learnMoreLink]")
  if [ -z "$findings" ] || [ "$findings" = None ]; then
    return 0
  fi
  echo "IAM Access Analyzer on the $type:" >&2
  echo "$findings" >&2
  if grep -q '^ERROR' <<<"$findings"; then
    echo "IAM Access Analyzer refuses the policy: nothing was changed by it" >&2
    exit 1
  fi
}

# Every request to the state bucket over plain HTTP is refused, whoever makes it.
BUCKET_POLICY=$(render state-bucket-policy.json)
validate RESOURCE_POLICY "$BUCKET_POLICY" --validate-policy-resource-type AWS::S3::Bucket
aws s3api put-bucket-policy --bucket "$BUCKET" --policy "$BUCKET_POLICY"

echo "GitHub OIDC provider"
if ! aws iam get-open-id-connect-provider --open-id-connect-provider-arn "$OIDC_ARN" >/dev/null 2>&1; then
  aws iam create-open-id-connect-provider --url "https://$OIDC_HOST" \
    --client-id-list sts.amazonaws.com >/dev/null
fi

trust() { # the GitHub subjects (token `sub` claims) that may assume a role
  local subjects=$1
  cat <<JSON
{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"$OIDC_ARN"},
"Action":"sts:AssumeRoleWithWebIdentity","Condition":{
"StringEquals":{"$OIDC_HOST:aud":"sts.amazonaws.com"},
"StringLike":{"$OIDC_HOST:sub":$subjects}}}]}
JSON
}

ensure_role() {
  local name=$1 subjects=$2
  if aws iam get-role --role-name "$name" >/dev/null 2>&1; then
    aws iam update-assume-role-policy --role-name "$name" --policy-document "$(trust "$subjects")"
  else
    aws iam create-role --role-name "$name" --assume-role-policy-document "$(trust "$subjects")" \
      --max-session-duration 7200 >/dev/null
  fi
}

# Deploys: only jobs running in one of the repository's GitHub environments (up.yml).
ensure_role "$DEPLOY_ROLE" "[\"repo:$GITHUB_REPO:environment:*\"]"
# What the stacks declare and nothing else (deploy-policy.json):
# - EC2 (VPC, subnets, routes, NAT, endpoints, security groups, launch templates), EKS,
#   ECR, CloudWatch Logs, RDS, ElastiCache and MSK, in the stack region only;
# - KMS keys and IAM roles and policies it creates itself (tagged managed-by=swarmstack,
#   as every stack resource is): it cannot touch a role or key it did not create, this
#   role and the state key included; roles are passed to EKS only, and the only managed
#   policies it may attach are the EKS ones the cluster uses;
# - the clusters' OIDC providers and the service-linked roles of those services;
# - never loosening, deleting or re-keying the state bucket and its key (explicit denies).
# What it cannot narrow: the regional services are allowed whole (their resource names
# come from Pulumi or stack config, and many of their calls take no resource or tag
# condition); a role that writes its roles' inline policies (the IRSA policies come from
# stack config) can give them any permission, so the stack code and config the workflow
# runs are trusted (a permissions boundary on every created role would close that; the
# stacks set none); and every stack of the account shares this one role.
DEPLOY_POLICY=$(render deploy-policy.json)
validate IDENTITY_POLICY "$DEPLOY_POLICY"
aws iam put-role-policy --role-name "$DEPLOY_ROLE" --policy-name swarmstack-deploy \
  --policy-document "$DEPLOY_POLICY"
# An earlier version of this script attached AdministratorAccess: take it away again.
ADMIN_ARN=arn:aws:iam::aws:policy/AdministratorAccess
if [ -n "$(aws iam list-attached-role-policies --role-name "$DEPLOY_ROLE" --output text \
  --query "AttachedPolicies[?PolicyArn=='$ADMIN_ARN'].PolicyArn")" ]; then
  aws iam detach-role-policy --role-name "$DEPLOY_ROLE" --policy-arn "$ADMIN_ARN"
fi
# Previews and drift checks: pull requests of this repository and the main branch.
ensure_role "$READ_ROLE" \
  "[\"repo:$GITHUB_REPO:pull_request\",\"repo:$GITHUB_REPO:ref:refs/heads/main\"]"
aws iam attach-role-policy --role-name "$READ_ROLE" \
  --policy-arn arn:aws:iam::aws:policy/ReadOnlyAccess

state_policy() { # read the state and decrypt its secrets; write only lock files (or all)
  local write=$1
  cat <<JSON
{"Version":"2012-10-17","Statement":[
{"Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketLocation"],"Resource":"arn:aws:s3:::$BUCKET"},
{"Effect":"Allow","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::$BUCKET/*"},
{"Effect":"Allow","Action":["s3:PutObject","s3:DeleteObject"],"Resource":"arn:aws:s3:::$BUCKET/$write"},
{"Effect":"Allow","Action":["kms:Decrypt","kms:Encrypt","kms:GenerateDataKey","kms:DescribeKey"],"Resource":"$KEY_ARN"}]}
JSON
}
aws iam put-role-policy --role-name "$DEPLOY_ROLE" --policy-name pulumi-state \
  --policy-document "$(state_policy '*')"
aws iam put-role-policy --role-name "$READ_ROLE" --policy-name pulumi-state \
  --policy-document "$(state_policy '.pulumi/locks/*')"

cat <<EOT

Done. Point the workflows at it (repository variables, not secrets: none of these is one):
  gh variable set PULUMI_BACKEND_URL --body "s3://$BUCKET?region=$REGION"
  gh variable set AWS_REGION --body "$REGION"
  gh variable set AWS_ROLE_ARN --body "arn:aws:iam::$ACCOUNT:role/$DEPLOY_ROLE"
  gh variable set AWS_READ_ROLE_ARN --body "arn:aws:iam::$ACCOUNT:role/$READ_ROLE"
and create each stack once with the KMS secrets provider:
  pulumi login "s3://$BUCKET?region=$REGION"
  pulumi stack init <stack> --secrets-provider "awskms://$ALIAS?region=$REGION"
EOT
