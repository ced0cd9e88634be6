#!/bin/sh
# One-shot job (image temporalio/admin-tools): wait until the cluster answers, create
# the namespace and Tributary's search attributes. An existing namespace or search
# attribute counts as success, so the job runs on every `docker compose up`.
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${TEMPORAL_NAMESPACE_RETENTION:-168h}"
ATTEMPTS=60

attempt=1
until temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; do
    if [ "$attempt" -ge "$ATTEMPTS" ]; then
        echo "temporal-setup: the cluster at $TEMPORAL_ADDRESS is not healthy after $ATTEMPTS tries" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep 2
done
echo "temporal-setup: cluster at $TEMPORAL_ADDRESS is serving"

if temporal operator namespace describe --address "$TEMPORAL_ADDRESS" \
    --namespace "$NAMESPACE" >/dev/null 2>&1; then
    echo "temporal-setup: namespace $NAMESPACE exists"
else
    temporal operator namespace create --address "$TEMPORAL_ADDRESS" \
        --namespace "$NAMESPACE" --retention "$RETENTION"
    echo "temporal-setup: namespace $NAMESPACE created (retention $RETENTION)"
fi

# The search attributes Tributary's workflows upsert and its CLI queries
# (client/contract.py SEARCH_ATTRIBUTES), all of type Keyword.
for name in TributarySpace TributaryUnit TributaryDriftState; do
    attempt=1
    while :; do
        listed=$(temporal operator search-attribute list --address "$TEMPORAL_ADDRESS" \
            --namespace "$NAMESPACE" 2>/dev/null || true)
        if printf '%s\n' "$listed" | grep -qw "$name"; then
            echo "temporal-setup: search attribute $name exists"
            break
        fi
        if temporal operator search-attribute create --address "$TEMPORAL_ADDRESS" \
            --namespace "$NAMESPACE" --name "$name" --type Keyword; then
            echo "temporal-setup: search attribute $name created (Keyword)"
            break
        fi
        if [ "$attempt" -ge 10 ]; then
            echo "temporal-setup: could not create search attribute $name" >&2
            exit 1
        fi
        attempt=$((attempt + 1))
        sleep 2
    done
done
echo "temporal-setup: done"
