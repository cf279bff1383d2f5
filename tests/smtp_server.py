#!/usr/bin/env python3
"""A real SMTP server for listgate's tests: Python's aiosmtpd, not our code.

Listens on 127.0.0.1 on a free port and prints the port on the first line of
stdout. Each accepted message is written to DIR/NNNNN.eml exactly as received
(after SMTP dot-unstuffing), with the envelope in DIR/NNNNN.json, via a
temporary name and a rename so a reader never sees half a file.

--mode ok                accept every message (250)
--mode tempfail:N[:CODE] answer the first N DATA commands with CODE (default
                         451; 421 also closes the connection), then accept
--mode reject            answer every DATA command with 550, quoting the recipient
--mode reject-rcpt       answer every RCPT command with 550 (so DATA gets 503)
--mode hold:SECONDS      store each message, then wait before answering 250
                         (a client killed meanwhile never hears the answer)
--port PORT              listen on PORT instead of a free one
--tls CERT KEY           offer STARTTLS with this certificate and require it
                         before MAIL
--implicit-tls           with --tls: TLS from the first byte (smtps) instead
--auth USER:PASSWORD     require AUTH (PLAIN or LOGIN) with these credentials
--no-pipelining          do not offer PIPELINING (RFC 2920) in the EHLO reply;
                         by default it is offered, as Postfix does

DIR/NNNNN.json also records whether the session was encrypted ("tls"),
which user authenticated ("user"), and whether the client pipelined
("pipelined": RCPT had already arrived when MAIL was answered).
"""
import argparse
import asyncio
import json
import os
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, folder, mode, pipelining):
        self.folder = folder
        self.mode = mode
        self.pipelining = pipelining
        self.data_commands = 0
        self.stored = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd reads commands one after another from its stream, so a
        # client's pipelined group is served in order; it just never says so.
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # A client that waits for each reply has sent nothing beyond MAIL.
        envelope.pipelined = len(server._reader._buffer) > 0
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "reject-rcpt":
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        if self.mode == "reject":
            # As Postfix does, the reply quotes the recipient.
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % envelope.rcpt_tos[0]
        if self.mode.startswith("tempfail:"):
            parts = self.mode.split(":")
            code = parts[2] if len(parts) > 2 else "451"
            if self.data_commands <= int(parts[1]):
                return "%s 4.3.0 Try again later" % code
        self.stored += 1
        stem = os.path.join(self.folder, "%05d" % self.stored)
        with open(stem + ".tmp", "wb") as f:
            f.write(envelope.original_content)
        with open(stem + ".json", "w") as f:
            json.dump({
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "tls": server.transport.get_extra_info("ssl_object") is not None,
                "user": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
                "pipelined": getattr(envelope, "pipelined", False),
            }, f)
        os.rename(stem + ".tmp", stem + ".eml")
        if self.mode.startswith("hold:"):
            await asyncio.sleep(float(self.mode.split(":")[1]))
        return "250 2.0.0 Ok: queued as test%05d" % self.stored


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--auth")
    parser.add_argument("--no-pipelining", action="store_true")
    args = parser.parse_args()
    handler = Handler(args.folder, args.mode, not args.no_pipelining)
    # Continue numbering after files already there (a restarted server).
    handler.stored = len([f for f in os.listdir(args.folder) if f.endswith(".eml")])
    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.tls)
    # A fixed hostname: without one, aiosmtpd calls the blocking
    # socket.getfqdn() for every connection, inside its event loop, and on a
    # host whose name is not in /etc/hosts each call can wait 5 s on DNS (a
    # fresh debootstrap root stalled the SIGKILL test this way).
    options = {"decode_data": False, "hostname": "localhost"}
    if context and not args.implicit_tls:
        options.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, data):
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (user.encode(), password.encode())
            return AuthResult(success=ok, auth_data=data)

        # Over implicit TLS aiosmtpd cannot tell the session is encrypted.
        options.update(authenticator=authenticator, auth_required=True, auth_require_tls=not args.implicit_tls)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, **options),
        "127.0.0.1",
        args.port,
        reuse_address=True,
        ssl=context if args.implicit_tls else None,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
