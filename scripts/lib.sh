# Shell helpers shared by the benchmark scripts (sourced, not run).

# N distinct free loopback ports, chosen by the OS. All N sockets are bound
# at once, so no port is handed out twice.
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$1"
}
