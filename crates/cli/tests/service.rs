//! `cnn serve` as its users run it: real server processes on real ports, driven over HTTP.
//! The PostgreSQL tests start a real server from the machine's PostgreSQL installation (initdb
//! in a temporary folder, as a non-root user) and are skipped, saying so, when none is
//! installed, unless CNN_REQUIRE_POSTGRES=1 (CI), which makes a missing PostgreSQL a failure.

// Tests report what they skip and what they measured.
#![allow(clippy::print_stderr)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

fn orl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../faces/assets/orl")
}

/// ORL person `s{person}`'s photo `image` as a PNG portrait.
fn portrait_png(person: usize, image: usize) -> Vec<u8> {
    let img = cli::orl_portrait(&orl(), &format!("s{person}"), image).unwrap();
    png(&img)
}

fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(vec![]);
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The bundled cat photo (CC0) and *The Starry Night* (public domain), as uploaded bytes.
fn style_inputs() -> (Vec<u8>, Vec<u8>) {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    (
        std::fs::read(assets.join("nn/assets/images/chelsea.png")).unwrap(),
        std::fs::read(assets.join("style/assets/starry_night.jpg")).unwrap(),
    )
}

/// Two portraits side by side: a photo with two faces.
fn pair_photo() -> Vec<u8> {
    let a = cli::orl_portrait(&orl(), "s1", 5).unwrap();
    let b = cli::orl_portrait(&orl(), "s3", 5).unwrap();
    // Square, as the detector sees its input (a wide picture would be squeezed).
    let side = a.width() + b.width();
    let mut canvas = image::RgbImage::from_pixel(side, side, image::Rgb([128, 128, 128]));
    let top = i64::from((side - a.height()) / 2);
    image::imageops::replace(&mut canvas, &a, 0, top);
    image::imageops::replace(&mut canvas, &b, i64::from(a.width()), top);
    png(&canvas)
}

/// A running `cnn serve`; killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts `cnn serve ARGS --listen 127.0.0.1:0` and waits until it listens.
    fn start(args: &[&str]) -> Server {
        // Waited for in `kill` (from `Drop`).
        #[allow(clippy::zombie_processes)]
        let mut child = Command::new(env!("CARGO_BIN_EXE_cnn"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cnn serve starts");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  server: {line}");
                // Read on after the starter stops listening: a full pipe would block the server.
                let _ = tx.send(line);
            }
        });
        let t0 = Instant::now();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(120).saturating_sub(t0.elapsed()))
                .expect("the server says where it listens within 2 minutes");
            if let Some(rest) = line.split("serving http://").nth(1) {
                let addr = rest.split('/').next().unwrap();
                return Server {
                    child,
                    base: format!("http://{addr}"),
                };
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP answer.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn expect(self, status: u16) -> Answer {
        assert_eq!(
            self.status,
            status,
            "answer: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    /// An error answer: the status and the JSON error's message.
    fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "answer: {}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        v["error"]["message"]
            .as_str()
            .expect("error.message")
            .to_string()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut r = r.expect("the request goes through");
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(200 << 20)
        .read_to_vec()
        .expect("a body");
    Answer { status, body }
}

/// A multipart/form-data body.
fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "cnn-test-boundary-7f3a";
    let mut body = vec![];
    for (name, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

struct Client {
    base: String,
    key: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn new(server: &Server, key: Option<&str>) -> Client {
        Client {
            base: server.base.clone(),
            key: key.map(str::to_string),
            agent: agent(),
        }
    }

    fn with<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.key {
            Some(k) => r.header("Authorization", &format!("Bearer {k}")),
            None => r,
        }
    }

    fn get(&self, path: &str) -> Answer {
        answer(
            self.with(self.agent.get(&format!("{}{path}", self.base)))
                .call(),
        )
    }

    fn delete(&self, path: &str) -> Answer {
        answer(
            self.with(self.agent.delete(&format!("{}{path}", self.base)))
                .call(),
        )
    }

    fn json(&self, method: &str, path: &str, body: &Value) -> Answer {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "POST" => self.agent.post(&url),
            "PATCH" => self.agent.patch(&url),
            m => panic!("{m}"),
        };
        answer(
            self.with(req)
                .content_type("application/json")
                .send(serde_json::to_vec(body).unwrap()),
        )
    }

    fn upload(&self, path: &str, parts: &[(&str, &[u8])]) -> Answer {
        let (ct, body) = multipart(parts);
        answer(
            self.with(self.agent.post(&format!("{}{path}", self.base)))
                .content_type(&ct)
                .send(&body[..]),
        )
    }

    fn put_bytes(&self, path: &str, bytes: &[u8]) -> Answer {
        answer(
            self.with(self.agent.put(&format!("{}{path}", self.base)))
                .content_type("application/octet-stream")
                .send(bytes),
        )
    }

    /// Waits for a job to end; returns its last status.
    fn wait_job(&self, id: i64, limit: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let s = self.get(&format!("/v1/jobs/{id}")).expect(200).json();
            if matches!(s["state"].as_str(), Some("done" | "failed")) {
                return s;
            }
            assert!(t0.elapsed() < limit, "job {id} still {s} after {limit:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Sends only the head of a multipart POST of `length` bytes with `Expect: 100-continue` and
/// returns what the server answers (the raw response).
fn expect_continue(c: &Client, path: &str, length: usize) -> String {
    use std::io::{Read, Write};
    let addr = c.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        c.key.as_deref().unwrap_or("")
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn admin_key(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin.key"))
        .expect("the first start writes an admin key")
        .trim()
        .to_string()
}

#[test]
fn embedded_service_enrols_identifies_and_guards_its_door() {
    let dir = common::tempdir("service", "embedded");
    let data = dir.join("data");
    let data_s = data.to_str().unwrap();
    let server = Server::start(&[
        "--data",
        data_s,
        "--max-upload-mb",
        "1",
        "--max-pixels",
        "4000000",
    ]);
    let admin = Client::new(&server, Some(&admin_key(&data)));
    let anonymous = Client::new(&server, None);

    // Open doors: health and the OpenAPI document, which lists every route.
    let health = anonymous.get("/v1/health").expect(200).json();
    assert_eq!(health["store"], "files");
    let doc = anonymous.get("/v1/openapi.json").expect(200).json();
    for path in [
        "/v1/detect",
        "/v1/verify",
        "/v1/galleries/{gallery}/identify",
        "/v1/galleries/{gallery}/people/{person}/photos",
        "/v1/jobs/style",
        "/v1/keys",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }

    // Closed doors: no key, a wrong key, a key without the scope.
    assert!(
        anonymous
            .get("/v1/galleries")
            .error(401)
            .contains("no API key")
    );
    let wrong = Client {
        key: Some("cnn_0000".into()),
        ..Client::new(&server, None)
    };
    assert!(
        wrong
            .get("/v1/galleries")
            .error(401)
            .contains("unknown API key")
    );
    let created = admin
        .json(
            "POST",
            "/v1/keys",
            &serde_json::json!({"label": "door camera", "scopes": ["read"]}),
        )
        .expect(201)
        .json();
    let reader = Client::new(&server, created["key"].as_str());
    let refused = reader
        .json(
            "POST",
            "/v1/galleries",
            &serde_json::json!({"name": "team"}),
        )
        .error(403);
    assert!(refused.contains("admin"), "{refused}");
    assert!(reader.get("/v1/keys").error(403).contains("admin"));

    // A gallery, people enrolled from single-face photos.
    admin
        .json(
            "POST",
            "/v1/galleries",
            &serde_json::json!({"name": "team"}),
        )
        .expect(201);
    assert!(
        admin
            .json(
                "POST",
                "/v1/galleries",
                &serde_json::json!({"name": "team"})
            )
            .error(409)
            .contains("exists")
    );
    assert!(
        admin
            .json(
                "POST",
                "/v1/galleries",
                &serde_json::json!({"name": "../etc"})
            )
            .error(400)
            .contains("letters, digits")
    );
    for person in 1..=3 {
        let r = admin
            .upload(
                &format!("/v1/galleries/team/people/s{person}/photos"),
                &[("photo", &portrait_png(person, 1))],
            )
            .expect(201)
            .json();
        assert_eq!(r["photos"], 1);
        assert_eq!(r["face"]["landmarks"].as_array().unwrap().len(), 68);
    }
    // The same photo again adds nothing; a photo of two people is refused, naming the count,
    // unless the largest face is asked for.
    let again = admin
        .upload(
            "/v1/galleries/team/people/s1/photos",
            &[("photo", &portrait_png(1, 1))],
        )
        .expect(200)
        .json();
    assert_eq!(again["added"], false);
    let two = pair_photo();
    let refused = admin
        .upload("/v1/galleries/team/people/s4/photos", &[("photo", &two)])
        .error(422);
    assert!(refused.contains("2 faces"), "{refused}");
    let largest = admin
        .upload(
            "/v1/galleries/team/people/largest/photos?largest=true",
            &[("photo", &two)],
        )
        .expect(201)
        .json();
    assert_eq!(largest["photos"], 1, "{largest}");
    admin
        .delete("/v1/galleries/team/people/largest")
        .expect(204);
    assert!(
        reader
            .upload(
                "/v1/galleries/team/people/s4/photos",
                &[("photo", &portrait_png(4, 1))]
            )
            .error(403)
            .contains("write")
    );

    // Identify: other photos of the enrolled people get their names, a stranger is unknown,
    // a photo of two people gets two answers.
    for person in 1..=3 {
        let r = reader
            .upload(
                "/v1/galleries/team/identify",
                &[("photo", &portrait_png(person, 5))],
            )
            .expect(200)
            .json();
        let faces = r["faces"].as_array().unwrap();
        assert_eq!(faces.len(), 1, "{r}");
        assert_eq!(faces[0]["identity"], format!("s{person}"), "{r}");
    }
    let stranger = reader
        .upload(
            "/v1/galleries/team/identify?top_k=2",
            &[("photo", &portrait_png(9, 2))],
        )
        .expect(200)
        .json();
    assert!(stranger["faces"][0]["identity"].is_null(), "{stranger}");
    assert_eq!(stranger["faces"][0]["top"].as_array().unwrap().len(), 2);
    let both = reader
        .upload("/v1/galleries/team/identify", &[("photo", &two)])
        .expect(200)
        .json();
    let mut names: Vec<String> = both["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["identity"].as_str().unwrap_or("unknown").to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["s1", "s3"], "{both}");

    // Verify and detect.
    let v = reader
        .upload(
            "/v1/verify",
            &[("a", &portrait_png(5, 1)), ("b", &portrait_png(5, 2))],
        )
        .expect(200)
        .json();
    assert_eq!(v["same"], true, "{v}");
    let d = reader
        .upload("/v1/detect", &[("photo", &two)])
        .expect(200)
        .json();
    assert_eq!(d["faces"].as_array().unwrap().len(), 2, "{d}");

    // Calibration from labelled photos (each part named by its person): every pair scored,
    // tau chosen at the best accuracy and used from then on; one person alone cannot do it.
    // (The portraits every other step here finds one face in.)
    let photos: Vec<(String, Vec<u8>)> = [
        (1, 1),
        (1, 5),
        (2, 1),
        (2, 5),
        (3, 1),
        (3, 5),
        (5, 1),
        (5, 2),
    ]
    .iter()
    .map(|&(p, i)| (format!("s{p}"), portrait_png(p, i)))
    .collect();
    let parts: Vec<(&str, &[u8])> = photos.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
    let cal = admin
        .upload("/v1/galleries/team/calibrate", &parts)
        .expect(200)
        .json();
    assert_eq!(cal["same_pairs"], 4, "{cal}");
    assert_eq!(cal["different_pairs"], 24, "{cal}");
    assert!(cal["accuracy"].as_f64().unwrap() >= 0.9, "{cal}");
    let tau = cal["tau"].as_f64().unwrap();
    let listed = reader.get("/v1/galleries").expect(200).json();
    let team = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "team")
        .unwrap();
    assert_eq!(team["calibrated"], true);
    assert!(
        (team["tau"].as_f64().unwrap() - tau).abs() < 1e-6,
        "{listed}"
    );
    let v = reader
        .upload(
            "/v1/verify?gallery=team",
            &[("a", &portrait_png(5, 1)), ("b", &portrait_png(5, 2))],
        )
        .expect(200)
        .json();
    assert!((v["tau"].as_f64().unwrap() - tau).abs() < 1e-6, "{v}");
    let alone = admin
        .upload("/v1/galleries/team/calibrate", &parts[..2])
        .error(422);
    assert!(alone.contains("two people"), "{alone}");

    // People: rename, remove, list.
    admin
        .json(
            "PATCH",
            "/v1/galleries/team/people/s3",
            &serde_json::json!({"name": "Carol"}),
        )
        .expect(204);
    admin.delete("/v1/galleries/team/people/s2").expect(204);
    assert!(
        admin
            .delete("/v1/galleries/team/people/s2")
            .error(404)
            .contains("s2")
    );
    let people = reader.get("/v1/galleries/team/people").expect(200).json();
    let names: Vec<&str> = people
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["s1", "Carol"]);

    // Export is the CLI's gallery file; importing it and exporting again gives the same bytes.
    let exported = admin.get("/v1/galleries/team/export").expect(200).body;
    let file = dir.join("team.gallery");
    std::fs::write(&file, &exported).unwrap();
    let listed = common::cnn(&[
        "faces",
        "gallery",
        "list",
        "--gallery",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(listed.status.success(), "{}", common::text(&listed));
    assert!(common::text(&listed).contains("Carol"));
    admin
        .put_bytes("/v1/galleries/copy/import", &exported)
        .expect(201);
    assert_eq!(
        admin.get("/v1/galleries/copy/export").expect(200).body,
        exported
    );
    assert!(
        admin
            .put_bytes("/v1/galleries/copy/import", &exported)
            .error(409)
            .contains("exists")
    );
    assert!(
        admin
            .put_bytes("/v1/galleries/bad/import", b"not a gallery")
            .error(400)
            .contains("not a gallery")
    );

    // Bad input: not multipart, a missing field, not an image, a truncated JPEG, too many
    // pixels, too many bytes, an unknown gallery, an unknown route.
    let not_multipart = answer(
        reader
            .with(reader.agent.post(&format!("{}/v1/detect", reader.base)))
            .content_type("text/plain")
            .send("hello"),
    );
    assert!(not_multipart.error(415).contains("multipart"));
    assert!(
        reader
            .upload("/v1/detect", &[("picture", &two)])
            .error(400)
            .contains("\"photo\"")
    );
    assert!(
        reader
            .upload("/v1/detect", &[("photo", b"GIF89a no")])
            .error(415)
            .contains("photo")
    );
    let mut jpeg = std::io::Cursor::new(vec![]);
    cli::orl_portrait(&orl(), "s1", 1)
        .unwrap()
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    let jpeg = jpeg.into_inner();
    assert!(
        reader
            .upload("/v1/detect", &[("photo", &jpeg[..jpeg.len() / 2])])
            .error(415)
            .contains("truncated")
    );
    let huge = png(&image::RgbImage::new(2100, 2000));
    let too_many = reader.upload("/v1/detect", &[("photo", &huge)]).error(413);
    assert!(too_many.contains("4000000 pixels"), "{too_many}");
    // Too many bytes: refused from the declared length, before the body is sent (as curl
    // does for large uploads: `Expect: 100-continue`).
    let too_big = expect_continue(&reader, "/v1/detect", 1_500_000);
    assert!(too_big.starts_with("HTTP/1.1 413"), "{too_big}");
    assert!(too_big.contains("1048576 bytes"), "{too_big}");
    assert!(
        reader
            .upload("/v1/galleries/nobody/identify", &[("photo", &two)])
            .error(404)
            .contains("nobody")
    );
    assert!(reader.get("/v1/nothing").error(404).contains("/v1/nothing"));

    // Metrics count what happened.
    let m = String::from_utf8(anonymous.get("/v1/metrics").expect(200).body).unwrap();
    assert!(
        m.contains("cnn_requests_total{route=\"/v1/galleries/{gallery}/identify\",status=\"200\"}"),
        "{m}"
    );
    assert!(
        m.contains("cnn_gallery_encodings{gallery=\"team\"} 2"),
        "{m}"
    );

    // A style job runs to the end and its PNG has the asked size.
    let (content, painting) = style_inputs();
    assert!(
        reader
            .upload(
                "/v1/jobs/style",
                &[("content", &content), ("style", &painting)]
            )
            .error(403)
            .contains("write")
    );
    assert!(
        admin
            .upload(
                "/v1/jobs/style",
                &[
                    ("content", &content),
                    ("style", &painting),
                    ("size", b"5000")
                ]
            )
            .error(400)
            .contains("size 5000")
    );
    let job = admin
        .upload(
            "/v1/jobs/style",
            &[
                ("content", &content),
                ("style", &painting),
                ("size", b"96"),
                ("iterations", b"5"),
            ],
        )
        .expect(202)
        .json();
    let id = job["id"].as_i64().unwrap();
    let end = admin.wait_job(id, Duration::from_secs(120));
    assert_eq!(end["state"], "done", "{end}");
    let result = reader
        .get(&format!("/v1/jobs/{id}/result"))
        .expect(200)
        .body;
    let img = image::load_from_memory(&result).unwrap();
    assert_eq!(img.width().max(img.height()), 96);

    // Revoked keys stop working.
    let id = created["record"]["id"].as_str().unwrap();
    admin.delete(&format!("/v1/keys/{id}")).expect(204);
    assert_eq!(reader.get("/v1/galleries").status, 401);
}

#[test]
fn a_request_beyond_the_time_limit_is_answered_503() {
    let dir = common::tempdir("service", "timeout");
    let data = dir.join("data");
    let server = Server::start(&[
        "--data",
        data.to_str().unwrap(),
        "--request-timeout",
        "0.001",
    ]);
    let c = Client::new(&server, Some(&admin_key(&data)));
    let late = c
        .upload("/v1/detect", &[("photo", &portrait_png(1, 1))])
        .error(503);
    assert!(late.contains("limit of 0.001 s"), "{late}");
}

/// A PostgreSQL server in a temporary folder, stopped when dropped.
struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_user: Option<&'static str>,
}

impl Postgres {
    /// Starts one, or says why not (None: skip).
    fn start(name: &str) -> Option<Postgres> {
        let bin = ["/usr/lib/postgresql"]
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists());
        let Some(bin) = bin else {
            assert!(
                std::env::var("CNN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "CNN_REQUIRE_POSTGRES=1 but no PostgreSQL under /usr/lib/postgresql"
            );
            eprintln!("skipped: PostgreSQL is not installed (Debian package postgresql)");
            return None;
        };
        let dir = common::tempdir("service-pg", name);
        // PostgreSQL refuses to run as root: run it as the `postgres` user then.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        let as_user = root.then_some("postgres");
        if let Some(u) = as_user {
            let ok = Command::new("chown")
                .args(["-R", u, dir.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let pg = Postgres {
            port: 20000 + (std::process::id() % 20000) as u16 + name.len() as u16,
            dir,
            bin,
            as_user,
        };
        let data = pg.dir.join("pgdata");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        let opts = format!(
            "-k {} -p {} -c listen_addresses=''",
            pg.dir.display(),
            pg.port
        );
        let log = pg.dir.join("log.txt");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        Some(pg)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let out = match self.as_user {
            Some(u) => Command::new("runuser")
                .args(["-u", u, "--"])
                .arg(&exe)
                .args(args)
                .output(),
            None => Command::new(&exe).args(args).output(),
        }
        .unwrap();
        assert!(out.status.success(), "{tool}: {}", common::text(&out));
    }

    fn url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.display(),
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("pgdata");
        let exe = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap(), "-m", "immediate", "stop"];
        let _ = match self.as_user {
            Some(u) => Command::new("runuser")
                .args(["-u", u, "--"])
                .arg(&exe)
                .args(args)
                .output(),
            None => Command::new(&exe).args(args).output(),
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn new_key(db: &str) -> String {
    let out = common::cnn(&["serve-keys", "create", "--db", db, "--label", "test admin"]);
    assert!(out.status.success(), "{}", common::text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn two_workers_share_one_postgres_and_survive_a_kill() {
    let Some(pg) = Postgres::start("workers") else {
        return;
    };
    let db = pg.url();
    let key = new_key(&db);
    let lease = ["--job-lease", "2"];
    let mut a = Server::start(&["--db", &db, "--worker", "A", lease[0], lease[1]]);
    let b = Server::start(&["--db", &db, "--worker", "B", lease[0], lease[1]]);
    let (ca, cb) = (Client::new(&a, Some(&key)), Client::new(&b, Some(&key)));
    assert_eq!(cb.get("/v1/health").expect(200).json()["store"], "postgres");

    // B serves the gallery (it is in B's memory), then A enrols: B sees it within a second.
    ca.json(
        "POST",
        "/v1/galleries",
        &serde_json::json!({"name": "office"}),
    )
    .expect(201);
    let probe = portrait_png(7, 4);
    let first = cb
        .upload("/v1/galleries/office/identify", &[("photo", &probe)])
        .expect(200)
        .json();
    assert!(first["faces"][0]["identity"].is_null(), "{first}");
    ca.upload(
        "/v1/galleries/office/people/s7/photos",
        &[("photo", &portrait_png(7, 1))],
    )
    .expect(201);
    let enrolled = Instant::now();
    loop {
        let r = cb
            .upload("/v1/galleries/office/identify", &[("photo", &probe)])
            .expect(200)
            .json();
        if r["faces"][0]["identity"] == "s7" {
            break;
        }
        assert!(
            enrolled.elapsed() < Duration::from_secs(1),
            "B did not see A's enrolment within 1 s: {r}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("B saw A's enrolment after {:?}", enrolled.elapsed());

    // A gallery written by the CLI's format goes into the database and comes back byte for
    // byte (exported from the other worker).
    let exported = cb.get("/v1/galleries/office/export").expect(200).body;
    ca.put_bytes("/v1/galleries/office2/import", &exported)
        .expect(201);
    assert_eq!(
        cb.get("/v1/galleries/office2/export").expect(200).body,
        exported
    );

    // kill -9 during an enrolment: the enrolment is all there or not at all, and the gallery
    // still works on the other worker.
    let before = cb.get("/v1/galleries/office/people").expect(200).json();
    let slow = portrait_png(8, 1);
    let base = a.base.clone();
    let k = key.clone();
    let sender = std::thread::spawn(move || {
        let c = Client {
            base,
            key: Some(k),
            agent: agent(),
        };
        let (ct, body) = multipart(&[("photo", &slow)]);
        c.with(
            c.agent
                .post(&format!("{}/v1/galleries/office/people/s8/photos", c.base)),
        )
        .content_type(&ct)
        .send(&body[..])
        .map(|r| r.status().as_u16())
    });
    std::thread::sleep(Duration::from_millis(150));
    a.kill();
    let sent = sender.join().unwrap();
    let after = cb.get("/v1/galleries/office/people").expect(200).json();
    let s8: Vec<&Value> = after
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "s8")
        .collect();
    match sent {
        Ok(201) => assert_eq!(s8.len(), 1, "{after}"),
        _ => assert!(
            s8.is_empty() || s8[0]["photos"] == 1,
            "half-written: {after}"
        ),
    }
    assert!(
        s8.iter().all(|p| p["photos"] == 1),
        "a person without their photo: {after}"
    );
    assert!(after.as_array().unwrap().len() >= before.as_array().unwrap().len());
    cb.upload(
        "/v1/galleries/office/people/s8/photos",
        &[("photo", &portrait_png(8, 1))],
    );
    let r = cb
        .upload(
            "/v1/galleries/office/identify",
            &[("photo", &portrait_png(8, 3))],
        )
        .expect(200)
        .json();
    assert_eq!(r["faces"][0]["identity"], "s8", "{r}");

    // kill -9 during a style job: the other worker takes it over when the lease runs out and
    // finishes it.
    let a = Server::start(&["--db", &db, "--worker", "A", lease[0], lease[1]]);
    let ca = Client::new(&a, Some(&key));
    let (content, painting) = style_inputs();
    let job = ca
        .upload(
            "/v1/jobs/style",
            &[
                ("content", &content),
                ("style", &painting),
                ("size", b"128"),
                ("iterations", b"60"),
            ],
        )
        .expect(202)
        .json();
    let id = job["id"].as_i64().unwrap();
    let t0 = Instant::now();
    let holder = loop {
        let s = cb.get(&format!("/v1/jobs/{id}")).expect(200).json();
        if s["state"] == "running" && s["percent"].as_f64().unwrap() > 0.0 {
            break s["worker"].as_str().unwrap().to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the job did not start: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut victim, survivor) = if holder == "A" { (a, cb) } else { (b, ca) };
    victim.kill();
    let end = survivor.wait_job(id, Duration::from_secs(180));
    assert_eq!(end["state"], "done", "{end}");
    assert_eq!(end["attempts"], 2, "{end}");
    assert_ne!(end["worker"], holder.as_str(), "{end}");
    let png = survivor
        .get(&format!("/v1/jobs/{id}/result"))
        .expect(200)
        .body;
    assert_eq!(image::load_from_memory(&png).unwrap().width(), 128);
    drop(victim);
}

/// An embedded-store server with gallery `gallery` holding `person` (ORL person `orl`'s first
/// photo): its folder, the server and the admin key.
fn embedded_with_one_person(
    test: &str,
    gallery: &str,
    person: &str,
    orl: usize,
) -> (PathBuf, Server, String) {
    let dir = common::tempdir("service", test);
    let data = dir.join("data");
    let server = Server::start(&["--data", data.to_str().unwrap()]);
    let key = admin_key(&data);
    let admin = Client::new(&server, Some(&key));
    admin
        .json(
            "POST",
            "/v1/galleries",
            &serde_json::json!({ "name": gallery }),
        )
        .expect(201);
    admin
        .upload(
            &format!("/v1/galleries/{gallery}/people/{person}/photos"),
            &[("photo", &portrait_png(orl, 1))],
        )
        .expect(201);
    (dir, server, key)
}

/// What the browser test needs: Node.js, Debian's Chromium, playwright-core installed in
/// crates/service/web/e2e (`npm ci` there). None: skip, unless CNN_REQUIRE_BROWSER=1.
fn browser_kit() -> Option<PathBuf> {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../service/web/e2e");
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let chromium = Path::new("/usr/bin/chromium").exists();
    let playwright = e2e.join("node_modules/playwright-core").exists();
    if node && chromium && playwright {
        return Some(e2e);
    }
    let why = format!(
        "node {}, /usr/bin/chromium {}, playwright-core in {} {}",
        if node { "found" } else { "missing" },
        if chromium {
            "found"
        } else {
            "missing (Debian package chromium)"
        },
        e2e.display(),
        if playwright {
            "found"
        } else {
            "missing (npm ci there)"
        }
    );
    assert!(
        std::env::var("CNN_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "CNN_REQUIRE_BROWSER=1 but {why}"
    );
    eprintln!("skipped: {why}");
    None
}

#[test]
fn web_page_in_a_real_browser() {
    let Some(e2e) = browser_kit() else {
        return;
    };
    let (dir, server, key) = embedded_with_one_person("browser", "family", "Bob", 2);
    let enrol = dir.join("ada.png");
    std::fs::write(&enrol, portrait_png(1, 1)).unwrap();
    let group = dir.join("group.png");
    std::fs::write(&group, pair_photo()).unwrap();
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let out = Command::new("node")
        .current_dir(&e2e)
        .arg("page.mjs")
        .args([&server.base, &key])
        .arg(&artefacts)
        .args([&enrol, &group])
        .arg(assets.join("nn/assets/images/chelsea.png"))
        .arg(assets.join("style/assets/starry_night.jpg"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the page test failed (screenshots in {}): {}",
        artefacts.display(),
        common::text(&out)
    );
    eprintln!(
        "page test: {} (screenshots in {})",
        common::text(&out).trim(),
        artefacts.display()
    );
}

/// Schemathesis (PyPI) generates requests from `/v1/openapi.json`, valid and invalid, and
/// checks that none gets a server error. Runs when CNN_SCHEMATHESIS names its executable (CI
/// installs it into a virtual environment outside the repository); skipped otherwise.
#[test]
fn no_server_error_for_any_request_the_schema_allows_or_forbids() {
    let Ok(exe) = std::env::var("CNN_SCHEMATHESIS") else {
        eprintln!("skipped: set CNN_SCHEMATHESIS to a schemathesis executable to run it");
        return;
    };
    let (dir, server, key) = embedded_with_one_person("schemathesis", "team", "s1", 1);
    // Schemathesis keeps a cache in its working folder: the test's own, not the checkout.
    let out = Command::new(&exe)
        .current_dir(&dir)
        .args(["run", &format!("{}/v1/openapi.json", server.base)])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["--checks", "not_a_server_error", "-n", "40", "--seed", "1"])
        // Revoking keys would lock the run out halfway.
        .args(["--exclude-path", "/v1/keys/{id}"])
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis runs");
    let text = common::text(&out);
    assert!(
        out.status.success(),
        "schemathesis found server errors:\n{text}"
    );
    let summary: Vec<&str> = text.lines().filter(|l| l.contains("generated")).collect();
    eprintln!("schemathesis: {}", summary.join(" "));
}
