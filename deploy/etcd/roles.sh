#!/bin/sh
# Turns on etcd's authentication with one role per writer of the Isthmus key space
# (docs/security.md, "etcd"). etcd must already take TLS clients with --client-cert-auth: the
# common name of a client certificate is then its etcd user, and no password is ever used.
#
#   deploy/etcd/roles.sh <endpoint> <etcd CA> <root client cert> <root client key> <cluster>...
#
# The root certificate's common name must be "root" (isthmus ca issue-etcd-client root).
# Every cluster named gets a user federation-<cluster> with the role isthmus-federation-<cluster>;
# the user "operator" gets isthmus-operator. Run it again with only new clusters to add them
# (it stops at the first error, such as a role that exists).
set -eu
[ "$#" -ge 4 ] || { echo "usage: $0 <endpoint> <ca.pem> <client-root.pem> <client-root-key.pem> [cluster...]" >&2; exit 2; }
endpoint=$1 ca=$2 cert=$3 key=$4
shift 4
e() { ETCDCTL_API=3 etcdctl --endpoints "$endpoint" --cacert "$ca" --cert "$cert" --key "$key" "$@" >/dev/null; }
p=/isthmus/v1

# The first run makes root and the operator; a later one (root exists) only adds clusters.
if ! e user get root 2>/dev/null; then
  e user add root --no-password
  e user grant-role root root
  # Operators: join and leave write a cluster's records, its intermediate and the trust bundle;
  # export writes intents; policy writes policies. All of /isthmus/v1/.
  e role add isthmus-operator
  e role grant-permission isthmus-operator --prefix=true readwrite "$p/"
  e user add operator --no-password
  e user grant-role operator isthmus-operator
fi

for c in "$@"; do
  r=isthmus-federation-$c
  e role add "$r"
  # A federation reads the whole mesh ...
  e role grant-permission "$r" --prefix=true read "$p/"
  # ... and writes only its own cluster's records. Prefixes end in "/": a prefix "east" would
  # also give it "eastern".
  for prefix in "clusters/$c/" "exports/$c/" "gateways/$c/" "probes/$c/"; do
    e role grant-permission "$r" --prefix=true readwrite "$p/$prefix"
  done
  for k in "traffic/$c" "events/$c" "trust/issued/$c"; do
    e role grant-permission "$r" readwrite "$p/$k"
  done
  # Shared by all federations: spent bootstrap tokens (any cluster's must be refused everywhere)
  # and which SLO verdict was acted on (the first federation to see it writes it).
  e role grant-permission "$r" --prefix=true readwrite "$p/tokens/used/"
  e role grant-permission "$r" --prefix=true readwrite "$p/slostatus/"
  # Rollouts (docs/rollouts.md): the federation holding /rolloutdriver moves every rollout on,
  # writing its record and the TrafficSplit it owns. So every federation may write TrafficSplits.
  e role grant-permission "$r" --prefix=true readwrite "$p/rollouts/"
  e role grant-permission "$r" readwrite "$p/rolloutdriver"
  e role grant-permission "$r" --prefix=true readwrite "$p/policies/trafficsplit/"
  # The write test of `isthmus check --config <this cluster's cluster.yaml>` (deleted at once).
  e role grant-permission "$r" --prefix=true readwrite "$p/preflight/"
  e user add "federation-$c" --no-password
  e user grant-role "federation-$c" "$r"
done

# etcd ignores this when authentication is already on.
e auth enable
