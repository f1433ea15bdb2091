#!/usr/bin/env python3
"""test_story_api.py — the native story API (docs/story-api.md) of
`simularity serve --scenarios` over real sockets, on the demo scenario and a
model generated here (always runs): scenarios and assets, every story
operation, the event stream, ownership by API key, bad requests.

Usage: python3 tests/server/test_story_api.py   (SIM_BIN: the binary)
Ends with "test_story_api: N passed, N failed, N skipped"; exit 1 on failure.
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as ts  # noqa: E402  (the Server helper and the counters)
from test_server import BIN, Server, check, counts, sse_blocks  # noqa: E402

SID = "lighthouse-night"


def events_reader(s, story, out, stop_after="state", key=None, n_stop=1):
    """Reads the story's SSE stream into out (a list of (event, data)) until
    n_stop `stop_after` events arrived."""
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    c.request("GET", f"/api/stories/{story}/events" + (f"?key={key}" if key else ""))
    r = c.getresponse()
    out.append(("status", r.status))
    seen = 0
    for name, data in (sse_blocks(r) if seen < n_stop else ()):
        out.append((name, data))
        seen += name == stop_after
        if seen >= n_stop:
            break
    c.close()


def get_raw(s, path):
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    c.request("GET", path)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data, r


def test_scenarios(s):
    st, j, _, _ = s.request("GET", "/api/scenarios")
    sc = j["scenarios"] if st == 200 else []
    check("scenarios_list", st == 200 and len(sc) == 1 and sc[0]["id"] == SID and sc[0]["episodes"][0]["id"] ==
          "storm-warning" and sc[0]["cover"].endswith("thumbnail.svg"), f"{st} {str(j)[:300]}")
    st, j, _, _ = s.request("GET", f"/api/scenarios/{SID}")
    check("scenario_manifest", st == 200 and j["manifest"]["id"] == SID and j["assetBase"] ==
          f"/api/scenarios/{SID}/assets/", f"{st}")
    st, _, text, r = s.request("GET", f"/api/scenarios/{SID}/assets/backgrounds/lamp-room.svg")
    etag = r.getheader("ETag")
    check("asset_served", st == 200 and r.getheader("Content-Type") == "image/svg+xml" and "<svg" in text and
          etag and r.getheader("Cache-Control"), f"{st} {r.getheaders()}")
    st, _, _, _ = s.request("GET", f"/api/scenarios/{SID}/assets/backgrounds/lamp-room.svg", headers={"If-None-Match": etag})
    check("asset_304", st == 304, f"{st}")
    st, data, r = get_raw(s, f"/api/scenarios/{SID}/assets/sounds/waves.wav")
    check("asset_audio_type", st == 200 and r.getheader("Content-Type") == "audio/wav" and data[:4] == b"RIFF", f"{st}")
    for p in ["manifest.json", "../../README.md", "%2e%2e/%2e%2e/README.md", "backgrounds/../manifest.json",
              "tools/make_art.py", "/etc/passwd"]:
        st, j, _, _ = s.request("GET", f"/api/scenarios/{SID}/assets/{p}")
        check(f"asset_refused[{p}]", st == 404, f"{st}")
    st, j, _, _ = s.request("GET", "/api/scenarios/nope")
    check("scenario_unknown_404", st == 404 and "no scenario 'nope'" in j["error"]["message"], f"{st} {j}")
    st, _, text, r = s.request("GET", "/")
    check("player_index", st == 200 and r.getheader("Content-Type").startswith("text/html"), f"{st}")
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
    c.request("HEAD", "/")
    r = c.getresponse()
    check("head_index", r.status == 200 and r.read() == b"", f"{r.status}")
    c.close()


def test_story_ops(s):
    st, j, _, _ = s.request("POST", "/api/stories", {"scenario": SID, "title": "Test"})
    ok = st == 201 and j["title"] == "Test" and len(j["path"]) == 4 and j["stage"]["scene"] == "harbour-dusk"
    check("create_story", ok, f"{st} {str(j)[:300]}")
    if not ok:
        return
    sid = j["id"]
    base = f"/api/stories/{sid}"
    # The event stream, read while the model writes.
    evs = []
    t = threading.Thread(target=events_reader, args=(s, sid, evs), daemon=True)
    t.start()
    time.sleep(0.3)
    st, j, _, _ = s.request("POST", base + "/advance", {"sampling": {"temperature": 1.0, "max_tokens": 16, "seed": 3}})
    t.join(30)
    check("advance", st == 200 and len(j["path"]) == 5 and j["path"][-1]["source"] == "model", f"{st} {str(j)[:300]}")
    names = [e[0] for e in evs]
    check("events_stream_order", names[0] == "status" and evs[0][1] == 200 and "progress" in names and "speaker" in names
          and names.index("speaker") < names.index("line") < names.index("state"), f"{names[:12]}")
    states = [e[1] for e in evs if e[0] == "state"]
    check("state_event_not_busy", states and states[-1]["busy"] is False and len(states[-1]["path"]) == 5, f"{states[-1:]}")
    line = [e[1] for e in evs if e[0] == "line"]
    text = "".join(e[1]["text"] for e in evs if e[0] == "text")
    check("events_text_is_the_line", line and text.rstrip("\n").rstrip() == line[0]["update"]["text"] and
          "turn" in line[0] and line[0]["turn"]["generated"] > 0, f"{text!r} vs {line[:1]}")
    # say, regenerate, variants, choose, edit, rewind, thumbs.
    st, j, _, _ = s.request("POST", base + "/say", {"text": "Is the lamp lit?"})
    check("say", st == 200 and j["path"][-1]["speaker"] == "player" and j["path"][-1]["text"] == "Is the lamp lit?", f"{st}")
    st, j, _, _ = s.request("POST", base + "/advance", {})
    first = j["path"][-1]["id"] if st == 200 else 0
    st, j, _, _ = s.request("POST", base + "/regenerate", {"sampling": {"seed": 99}})
    check("regenerate_variant", st == 200 and j["path"][-1]["variant"] == 2 and j["path"][-1]["variants"] == 2 and
          j["path"][-1]["id"] != first and j["path"][-1]["siblings"] == [first, j["path"][-1]["id"]], f"{st} {str(j)[-300:]}")
    st, j, _, _ = s.request("POST", base + "/choose", {"update": first})
    check("choose", st == 200 and j["path"][-1]["id"] == first and j["path"][-1]["variant"] == 1, f"{st}")
    st, j, _, _ = s.request("POST", base + "/edit", {"update": first, "text": "Edited."})
    check("edit", st == 200 and j["path"][-1]["text"] == "Edited." and j["path"][-1]["edit_of"] == first and
          j["path"][-1]["variants"] == 3, f"{st} {str(j)[-300:]}")
    st, j, _, _ = s.request("POST", base + "/thumbs", {"update": first, "value": 1})
    check("thumbs", st == 200, f"{st}")
    st, j, _, _ = s.request("POST", base + "/rewind", {"update": 2})
    check("rewind", st == 200 and len(j["path"]) == 2, f"{st}")
    st, j, _, _ = s.request("GET", base + "/tree")
    ups = j["updates"] if st == 200 else []
    check("tree_keeps_everything", st == 200 and j["head"] == 2 and len(ups) == 9 and
          any(u["id"] == first and u["thumbs"] == 1 for u in ups), f"{st} {len(ups)}")
    st, j, _, _ = s.request("POST", base + "/choose", {"update": 3})
    check("choose_back_down", st == 200 and len(j["path"]) == 7 and j["path"][-1]["text"] == "Edited.", f"{st} {len(j['path'])}")
    # Saves with thumbnails; load; fork.
    png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC"
    st, j, _, _ = s.request("POST", base + "/save", {"name": "first", "thumbnail": png})
    save = j["save"]["id"] if st == 201 else 0
    check("save", st == 201 and j["save"]["name"] == "first", f"{st} {j}")
    st, data, r = get_raw(s, f"{base}/saves/{save}/thumbnail")
    check("save_thumbnail", st == 200 and r.getheader("Content-Type") == "image/png" and data[:4] == b"\x89PNG", f"{st}")
    s.request("POST", base + "/rewind", {"update": 1})
    st, j, _, _ = s.request("POST", base + "/load", {"save": save})
    check("load_save", st == 200 and len(j["path"]) == 7 and [x["id"] for x in j["saves"]] == [save], f"{st}")
    st, j, _, _ = s.request("POST", base + "/fork", {"title": "Fork"})
    check("fork", st == 201 and j["id"] != sid and j["title"] == "Fork" and len(j["path"]) == 7, f"{st} {str(j)[:200]}")
    fork = j["id"] if st == 201 else 0
    st, j, _, _ = s.request("GET", "/api/stories")
    check("list_stories", st == 200 and {x["id"] for x in j["stories"]} >= {sid, fork}, f"{st}")
    # Bad requests.
    for path, body, want, frag in [
        (base + "/say", {"text": 5}, 400, '"text" must be a string'),
        (base + "/say", {"text": ""}, 400, "empty"),
        (base + "/choose", {"update": "x"}, 400, '"update" must be an integer'),
        (base + "/choose", {"update": 99999}, 404, "not found"),
        (base + "/edit", {"update": first, "text": "two\nlines"}, 400, "one line"),
        (base + "/advance", {"sampling": {"temperature": 9}}, 400, "sampling.temperature"),
        (base + "/advance", {"sampling": {"bogus": 1}}, 400, "sampling.bogus"),
        (base + "/save", {"name": "x", "thumbnail": "data:image/gif;base64,AAAA"}, 400, "data:image/png;base64"),
        (base + "/save", {"name": "x", "thumbnail": "data:image/png;base64,!!!"}, 400, "invalid base64"),
        (base + "/thumbs", {"update": first, "value": 2}, 400, '"value" must be an integer -1..1'),
        (base + "/dance", {}, 404, "no story operation 'dance'"),
        ("/api/stories/999/say", {"text": "x"}, 404, "story 999 not found"),
        ("/api/stories", {"scenario": "nope"}, 404, "no scenario 'nope'"),
        ("/api/stories", {"scenario": SID, "episode": "nope"}, 404, "no episode 'nope'"),
        ("/api/stories", {"title": 3}, 400, '"scenario" is required'),
    ]:
        st, j, text, _ = s.request("POST", path, body)
        msg = j["error"]["message"] if j and "error" in j else text
        check(f"bad_request[{path.rsplit('/', 1)[-1]}:{json.dumps(body)[:40]}]", st == want and frag in msg, f"{st} {text[:200]}")
    st, j, text, _ = s.request("POST", base + "/say", raw="{not json")
    check("bad_json", st == 400 and "invalid JSON" in text, f"{st} {text[:200]}")
    # Delete.
    st, _, _, _ = s.request("DELETE", f"/api/stories/{fork}")
    st2, _, _, _ = s.request("GET", f"/api/stories/{fork}")
    check("delete_story", st == 204 and st2 == 404, f"{st} {st2}")


def test_owners(model, scen, tmp):
    s = Server(model, "--scenarios", scen, "--db", os.path.join(tmp, "keys.db"), "--story-ctx", "16384",
               "--api-key", "alpha", "--api-key", "beta")
    try:
        a = {"Authorization": "Bearer alpha"}
        b = {"Authorization": "Bearer beta"}
        st, _, _, _ = s.request("GET", "/api/scenarios")
        check("keys_required", st == 401, f"{st}")
        st, j, _, _ = s.request("POST", "/api/stories", {"scenario": SID}, headers=a)
        sid = j["id"] if st == 201 else 0
        check("owner_create", st == 201, f"{st}")
        st, j, text, _ = s.request("GET", f"/api/stories/{sid}", headers=b)
        check("other_key_404", st == 404 and f"story {sid} not found" in text, f"{st} {text[:200]}")
        st, j, _, _ = s.request("GET", "/api/stories", headers=b)
        check("other_key_lists_nothing", st == 200 and j["stories"] == [], f"{st} {j}")
        st, j, _, _ = s.request("POST", f"/api/stories/{sid}/say", {"text": "hi"}, headers=b)
        check("other_key_cannot_write", st == 404, f"{st}")
        evs = []
        events_reader(s, sid, evs, stop_after="nothing", key="alpha", n_stop=0)
        check("events_key_in_query", evs and evs[0] == ("status", 200), f"{evs[:2]}")
        evs = []
        events_reader(s, sid, evs, stop_after="nothing", key="beta", n_stop=0)
        check("events_other_key_404", evs and evs[0] == ("status", 404), f"{evs[:2]}")
    finally:
        s.stop()


def main():
    tmp = tempfile.mkdtemp(prefix="sim-story-")
    model = os.path.join(tmp, "m.gguf")
    subprocess.run([BIN, "synth", "-o", model, "--vocab", "512", "--dim", "64", "--layers", "2", "--ctx", "4096"],
                   check=True, capture_output=True)
    scen = os.path.join(ts.ROOT, "scenarios")
    s = Server(model, "--scenarios", scen, "--db", os.path.join(tmp, "s.db"), "--story-ctx", "16384")
    try:
        test_scenarios(s)
        test_story_ops(s)
    finally:
        rc = s.stop()
        check("exit_0_on_sigterm", rc == 0, f"exit {rc}")
    test_owners(model, scen, tmp)
    # A corrupt database is refused at startup, untouched.
    bad = os.path.join(tmp, "bad.db")
    open(bad, "wb").write(b"SQLite format 3\x00" + b"\xff" * 4080)
    before = open(bad, "rb").read()
    p = subprocess.run([BIN, "serve", "-m", model, "--port", "0", "--scenarios", scen, "--db", bad], capture_output=True,
                       text=True, timeout=60)
    check("corrupt_db_refused", p.returncode == 1 and "bad.db" in p.stderr and open(bad, "rb").read() == before,
          f"{p.returncode} {p.stderr[:300]}")
    subprocess.run(["rm", "-rf", tmp])
    print(f"test_story_api: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
