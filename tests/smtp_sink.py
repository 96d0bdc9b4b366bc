"""A real SMTP server on a loopback port for the mail tests (aiosmtpd is not installed here).

Enough of RFC 5321 for smtplib: EHLO/HELO, MAIL, RCPT, DATA (with dot-unstuffing), RSET, NOOP, QUIT.
Every accepted message is kept as (envelope sender, envelope recipients, raw bytes). `reject_rcpt`
answers 451 to RCPT (a temporarily failing server).
"""
import email
import socketserver
import threading
import time
from email.policy import default as default_policy


class _Handler(socketserver.StreamRequestHandler):
    timeout = 10

    def reply(self, line):
        self.wfile.write(line.encode("ascii") + b"\r\n")
        self.wfile.flush()

    def handle(self):
        sink = self.server.sink
        self.reply("220 sink.test ESMTP ready")
        sender, recipients = None, []
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb == "EHLO":
                self.reply("250-sink.test")
                self.reply("250-8BITMIME")
                self.reply("250 SMTPUTF8")
            elif verb == "HELO":
                self.reply("250 sink.test")
            elif verb == "MAIL":
                sender, recipients = line.split(":", 1)[1].split()[0].strip("<>"), []
                self.reply("250 OK")
            elif verb == "RCPT":
                if sink.reject_rcpt:
                    self.reply("451 4.3.0 try again later")
                    continue
                recipients.append(line.split(":", 1)[1].strip().strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                if not recipients:
                    self.reply("503 need RCPT first")
                    continue
                self.reply("354 end with <CRLF>.<CRLF>")
                data = self._read_data()
                time.sleep(sink.delay)
                sink.accept(sender, recipients, data)
                self.reply("250 OK queued")
                sender, recipients = None, []
            elif verb == "RSET":
                sender, recipients = None, []
                self.reply("250 OK")
            elif verb == "NOOP":
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 command not implemented")

    def _read_data(self):
        lines = []
        while True:
            raw = self.rfile.readline(1 << 20)
            if not raw or raw in (b".\r\n", b".\n"):
                return b"".join(lines)
            lines.append(raw[1:] if raw.startswith(b"..") else raw)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class SmtpSink:
    """Start with `start()`, stop with `stop()`; `port` stays the same across a stop and a new start,
    so a test can take the server down and bring it back where the app expects it."""

    def __init__(self, port=0):
        self.port = port
        self.messages = []
        self.reject_rcpt = False
        self.delay = 0.0  # seconds per DATA, to make two workers overlap
        self._lock = threading.Lock()
        self._server = None

    def start(self):
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.sink = self
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accept(self, sender, recipients, data):
        with self._lock:
            self.messages.append((sender, list(recipients), data))

    def parsed(self):
        """(recipients, email.message.EmailMessage) of every message received."""
        with self._lock:
            return [(rcpts, email.message_from_bytes(data, policy=default_policy)) for _s, rcpts, data in self.messages]
