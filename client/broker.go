package client

// DefaultBrokerPath is where the broker listens (seqknock-broker.socket).
const DefaultBrokerPath = "/run/seqknock/broker.sock"

// DefaultBrokerGroup is the group whose members may use the broker.
const DefaultBrokerGroup = "seqknock"
