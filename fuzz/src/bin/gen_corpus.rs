//! Writes the seed corpus of every fuzz target into `corpus/<target>/` (valid inputs and
//! near misses: truncated, one byte changed). Run from `fuzz/`:
//! `cargo run --release --bin gen_corpus` (the seeds are committed; rerun after changing an
//! input layout in `src/lib.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use stampcache::codec::{Bincode, Postcard};
use stampcache::{Bitcode, Codec};
use stampcache_fuzz::{Article, Kind};

/// The seeds of one target, written as `seed-NNN` files.
struct Seeds {
    target: &'static str,
    inputs: Vec<Vec<u8>>,
}

impl Seeds {
    fn new(target: &'static str) -> Seeds {
        Seeds {
            target,
            inputs: Vec::new(),
        }
    }

    fn add(&mut self, input: impl Into<Vec<u8>>) {
        let input = input.into();
        if !self.inputs.contains(&input) {
            self.inputs.push(input);
        }
    }

    /// The input, and near misses: cut in half, last byte dropped, a middle byte flipped.
    fn add_near(&mut self, input: &[u8]) {
        self.add(input);
        if !input.is_empty() {
            self.add(&input[..input.len() / 2]);
            self.add(&input[..input.len() - 1]);
            let mut flipped = input.to_vec();
            flipped[input.len() / 2] ^= 0x5a;
            self.add(flipped);
        }
    }

    fn write(self, root: &Path) {
        let dir = root.join(self.target);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("corpus dir");
        for (i, input) in self.inputs.iter().enumerate() {
            fs::write(dir.join(format!("seed-{i:03}")), input).expect("seed written");
        }
        println!("{}: {} seeds", self.target, self.inputs.len());
    }
}

fn article(id: u64, nested: bool) -> Article {
    Article {
        id,
        delta: -7,
        title: format!("title {id}"),
        tags: vec!["rust".into(), "cache".into()],
        score: (id % 2 == 0).then_some(2.5),
        parent: nested.then(|| Box::new(article(id + 100, false))),
        meta: BTreeMap::from([("k".to_owned(), vec![1, 2, 3])]),
        kind: match id % 4 {
            0 => Kind::Draft,
            1 => Kind::Published { at: 1_700_000_000 },
            2 => Kind::Other("x".into()),
            _ => Kind::Pair(3, Some(9)),
        },
        small: (true, 'é', -1, 65535, 0.5, -(1 << 100), 1 << 120),
        unit: (),
    }
}

/// Encodings of one value of each type `decode_as_user_types` tries.
fn payloads<C: Codec>() -> Vec<Vec<u8>> {
    let mut out = vec![
        C::encode(&vec!["a".to_owned(), "bc".to_owned(), String::new()]).unwrap(),
        C::encode(&(42u64, "answer".to_owned())).unwrap(),
        C::encode(&vec![article(1, true), article(2, false)]).unwrap(),
        C::encode(&Vec::<Article>::new()).unwrap(),
        C::encode(&Some(vec![(-1i64, Some("x".to_owned())), (2, None)])).unwrap(),
        C::encode(&BTreeMap::from([
            ("a".to_owned(), vec![1u32, 2]),
            ("b".to_owned(), vec![]),
        ]))
        .unwrap(),
        C::encode(&vec![0u8, 1, 255]).unwrap(),
        C::encode("a string").unwrap(),
        C::encode(&vec![
            Some(Kind::Draft),
            None,
            Some(Kind::Other("o".into())),
        ])
        .unwrap(),
        C::encode(&vec![vec![vec![1u64, u64::MAX]], vec![]]).unwrap(),
    ];
    // Huge lengths in tiny inputs: a varint, a little-endian u64, and all-ones bytes.
    out.push(vec![0xff, 0xff, 0xff, 0xff, 0x0f]);
    out.push(vec![0xfb, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0]);
    out.push(vec![0xff; 16]);
    out
}

fn codec_seeds<C: Codec>(target: &'static str) -> Seeds {
    let mut s = Seeds::new(target);
    s.add(Vec::new());
    for p in payloads::<C>() {
        s.add_near(&p);
    }
    s
}

/// An MGET reply in `mget_reply`'s layout: mode (1: hit check, 2: with dead stamps),
/// stamps (flags, current, dead), header cut (255: whole), payload.
fn mget(mode: u8, stamps: &[(u8, &[u8], &[u8])], cut: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![mode, stamps.len() as u8];
    for (flags, cur, dead) in stamps {
        out.push(*flags);
        out.push(cur.len() as u8);
        out.extend_from_slice(cur);
        out.push(dead.len() as u8);
        out.extend_from_slice(dead);
    }
    out.push(cut);
    out.extend_from_slice(payload);
    out
}

fn reply_seeds() -> Seeds {
    let mut s = Seeds::new("reply");
    let payload = Bitcode::encode(&vec![article(1, true)]).unwrap();
    let one: &[(u8, &[u8], &[u8])] = &[(0, b"s1", b"d1")];
    let two: &[(u8, &[u8], &[u8])] = &[(0, b"s1", b"d1"), (4, b"s2", b"d2")];
    for mode in [1, 2] {
        s.add(mget(mode, &[], 255, &payload)); // no stamps: valid
        s.add(mget(mode, one, 255, &payload)); // valid hit
        s.add(mget(mode, two, 255, &payload)); // signed with a dead value: stale
        s.add(mget(mode, &[(1, b"s1", b"d1")], 255, &payload)); // a stamp missing
        s.add(mget(mode, &[(2, b"s1", b"d1")], 255, b"p")); // no dead value
        s.add(mget(mode, one, 20, &payload)); // a short header
        s.add(mget(mode, one, 0, b"")); // an empty entry
    }
    // Arbitrary replies (mode 0, stamp count, then redis_value's layout).
    let token = [&[0u8, 1, 2, 40][..], &[b'a'; 40]].concat();
    s.add(token); // a prepare token
    s.add([0, 1, 2, 3, b'a', b'b', b'c']); // a short bulk string
    s.add([0, 0, 0]); // nil
    s.add([0, 0, 1, 5, 0, 0, 0, 0, 0, 0, 0]); // an int
    s.add([0, 0, 6]); // OK
    s.add([0, 0, 4, 2, 2, 1, b'0', 4, 2, 2, 1, b'k', 0]); // a SCAN reply
    s.add([0, 1, 4, 3, 2, 1, b'e', 2, 1, b's', 0]); // an MGET with a nil stamp
    s.add([0, 0, 7, 2, 5, 1, b'k', 1, 9, 0, 0, 0, 0, 0, 0, 0]); // a map
    s.add([0, 0, 9, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f]); // a NaN double
    s.add([0, 0, 4, 7, 4, 7, 4, 7, 4, 7, 4, 7, 0]); // deep arrays
    for resp in [
        &b"*2\r\n$1\r\na\r\n$-1\r\n"[..],
        b"-ERR no\r\n",
        b"%1\r\n+k\r\n:1\r\n",
        b"=7\r\ntxt:abc\r\n",
        b"(12345678901234567890\r\n",
        b"*-1\r\n",
    ] {
        let mut v = vec![0, 0, 15, resp.len() as u8];
        v.extend_from_slice(resp);
        s.add(v);
    }
    s
}

fn url_seeds() -> Seeds {
    let mut s = Seeds::new("url");
    for (i, url) in [
        "redis://127.0.0.1/",
        "redis://127.0.0.1:6379/0",
        "redis://:secret@localhost:6380/3",
        "redis://user:p%40ss@[::1]:6379/1?protocol=resp3",
        "rediss://example.com/#insecure",
        "rediss://user@example.com:6380/2#insecure",
        "redis+unix:///tmp/redis.sock?db=2",
        "unix:///tmp/redis.sock",
        "redis://host:99999/",
        "redis://host/notanumber",
        "redis://",
        "http://host/",
        "redis://h/0?protocol=resp9",
        "",
        "redis://%zz@h/",
    ]
    .iter()
    .enumerate()
    {
        // The mode byte picks which builders run (0: blocking, 1: async).
        s.add([&[(i % 3) as u8][..], url.as_bytes()].concat());
    }
    s
}

/// Helpers writing pgoutput messages.
mod pg {
    pub fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    pub fn begin() -> Vec<u8> {
        let mut b = vec![b'B'];
        b.extend_from_slice(&0x0100_0000u64.to_be_bytes());
        b.extend_from_slice(&[0; 12]);
        b
    }

    pub fn commit(end: u64) -> Vec<u8> {
        let mut b = vec![b'C', 0];
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&end.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b
    }

    /// Relation 16384 `public.article` (id int4 key, category int4, title text, body
    /// bytea, at timestamptz, price numeric).
    pub fn relation(identity: u8) -> Vec<u8> {
        let mut b = vec![b'R'];
        b.extend_from_slice(&16384u32.to_be_bytes());
        string(&mut b, "public");
        string(&mut b, "article");
        b.push(identity);
        let cols: &[(u8, &str, u32)] = &[
            (1, "id", 23),
            (0, "category", 23),
            (0, "title", 25),
            (0, "body", 17),
            (0, "at", 1184),
            (0, "price", 1700),
        ];
        b.extend_from_slice(&(cols.len() as u16).to_be_bytes());
        for (flags, name, oid) in cols {
            b.push(*flags);
            string(&mut b, name);
            b.extend_from_slice(&oid.to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
        }
        b
    }

    pub fn tuple(out: &mut Vec<u8>, values: &[Option<&str>]) {
        out.extend_from_slice(&(values.len() as u16).to_be_bytes());
        for v in values {
            match v {
                None => out.push(b'n'),
                Some("~") => out.push(b'u'),
                Some(t) => {
                    out.push(b't');
                    out.extend_from_slice(&(t.len() as u32).to_be_bytes());
                    out.extend_from_slice(t.as_bytes());
                }
            }
        }
    }

    pub const ROW: &[Option<&str>] = &[
        Some("1"),
        Some("7"),
        Some("hello"),
        Some("\\x61ff"),
        Some("2024-02-29 12:00:00.5+00"),
        Some("3.14"),
    ];

    pub fn insert() -> Vec<u8> {
        let mut b = vec![b'I'];
        b.extend_from_slice(&16384u32.to_be_bytes());
        b.push(b'N');
        tuple(&mut b, ROW);
        b
    }

    pub fn update(old: Option<u8>) -> Vec<u8> {
        let mut b = vec![b'U'];
        b.extend_from_slice(&16384u32.to_be_bytes());
        if let Some(marker) = old {
            b.push(marker);
            tuple(&mut b, ROW);
        }
        b.push(b'N');
        tuple(
            &mut b,
            &[Some("1"), Some("8"), Some("~"), None, None, Some("1")],
        );
        b
    }

    pub fn delete(marker: u8) -> Vec<u8> {
        let mut b = vec![b'D'];
        b.extend_from_slice(&16384u32.to_be_bytes());
        b.push(marker);
        tuple(&mut b, &[Some("1"), None, None, None, None, None]);
        b
    }

    pub fn truncate(ids: &[u32]) -> Vec<u8> {
        let mut b = vec![b'T'];
        b.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        b.push(0);
        for id in ids {
            b.extend_from_slice(&id.to_be_bytes());
        }
        b
    }

    /// Messages, each preceded by its length (one byte), as the pgoutput target cuts them.
    pub fn stream(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.push(m.len() as u8);
            out.extend_from_slice(m);
        }
        out
    }
}

fn pgoutput_seeds() -> Seeds {
    let mut s = Seeds::new("pgoutput");
    let singles = [
        pg::begin(),
        pg::commit(0x0200_0000),
        pg::relation(b'd'),
        pg::relation(b'f'),
        pg::insert(),
        pg::update(None),
        pg::update(Some(b'K')),
        pg::update(Some(b'O')),
        pg::delete(b'K'),
        pg::delete(b'O'),
        pg::truncate(&[16384]),
        pg::truncate(&[16384, 99]),
        vec![b'O', 0, 0],
        vec![b'Y'],
        vec![b'M'],
        pg::truncate(&[]).into_iter().chain([0xff; 3]).collect(), // a bad count
    ];
    for m in &singles {
        s.add_near(m);
    }
    let tx = |body: &[Vec<u8>]| {
        let mut all = vec![pg::relation(b'd'), pg::begin()];
        all.extend_from_slice(body);
        all.push(pg::commit(0x0300_0000));
        pg::stream(&all)
    };
    s.add(tx(&[pg::insert()]));
    s.add(tx(&[pg::insert(), pg::update(None), pg::delete(b'K')]));
    s.add(tx(&[pg::update(Some(b'O')), pg::truncate(&[16384])]));
    s.add(tx(&vec![pg::insert(); 10])); // past the row limit: the whole table
    s.add(pg::stream(&[pg::begin(), pg::insert(), pg::commit(1)])); // no relation
    s.add(pg::stream(&[pg::relation(b'n'), pg::insert()])); // outside a transaction
    s.add(pg::stream(&[pg::commit(1)])); // a commit without begin
    s
}

fn conninfo_seeds() -> Seeds {
    let mut s = Seeds::new("conninfo");
    for c in [
        "host=db port=6543 user=u password=p dbname=app",
        "host=127.0.0.1 user=postgres dbname=test sslmode=require",
        "host=h password='quoted' sslmode=verify-full sslrootcert=/etc/ca.pem",
        "application_name=x connect_timeout=5",
        "postgres://u:p@db:6543/app",
        "postgresql://u:p%40ss@db/app?sslmode=require",
        "postgres://[::1]:5432/db?sslmode=verify-ca&sslrootcert=ca.pem",
        "postgres://u@h/d?x=%zz",
        "postgres://h:notaport/d",
        "postgres://%",
        "postgres://%e2%82",
        "host",
        "colour=blue",
        "sslmode=prefer",
        "port=99999",
        "",
    ] {
        s.add(c);
    }
    s
}

fn lsn_seeds() -> Seeds {
    let mut s = Seeds::new("lsn");
    for l in [
        "0/0",
        "16/B374D848",
        "FFFFFFFF/FFFFFFFF",
        " 1/2 ",
        "100000000/0",
        "1/",
        "/1",
        "x/1",
        "+1/+1",
        "-1/0",
        "",
    ] {
        s.add(l);
    }
    s
}

fn types_seeds() -> Seeds {
    let mut s = Seeds::new("types");
    let oids = stampcache::fuzzing::known_type_oids();
    let sample = |oid: u32| -> &'static [&'static str] {
        match oid {
            16 => &["t", "f", "x"],
            17 => &["\\x61ff", "\\x6", "\\xzz", "abc"],
            20 | 21 | 23 | 26 => &[
                "1",
                "-9000000000",
                "x",
                "99999999999999999999999999999999999999999",
            ],
            700 | 701 => &["2.5", "NaN", "-Infinity", "1e400", "1.1"],
            1082 => &["2024-02-29", "0044-03-15 BC", "2024-2-29"],
            1184 => &[
                "2023-11-14 22:13:20.123456+00",
                "2023-11-14 22:13:20+00",
                "2023-11-14 22:13:20.1234567+00",
                "2023-11-14 22:13:20+01",
                "infinity",
            ],
            _ => &["text", "a&b", ""],
        }
    };
    for (i, oid) in oids.iter().enumerate() {
        for text in sample(*oid) {
            s.add([&[i as u8][..], text.as_bytes()].concat());
        }
    }
    s.add([&[255u8][..], b"3.14"].concat()); // numeric: unknown
    s.add([0u8, 0xff, 0xfe]); // not UTF-8
    s
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    reply_seeds().write(&root);
    codec_seeds::<Bitcode>("codec_bitcode").write(&root);
    codec_seeds::<Postcard>("codec_postcard").write(&root);
    codec_seeds::<Bincode>("codec_bincode").write(&root);
    url_seeds().write(&root);
    pgoutput_seeds().write(&root);
    conninfo_seeds().write(&root);
    lsn_seeds().write(&root);
    types_seeds().write(&root);
    typed_seeds().write(&root);
    sql_seeds().write(&root);
}

/// Statements the analysis meets: granular reads, joins, subqueries, writes, and refusals.
fn sql_seeds() -> Seeds {
    let mut s = Seeds::new("sql");
    for sql in [
        "SELECT id, title FROM article WHERE category = $1 ORDER BY id LIMIT 20",
        "SELECT count(*) FROM article WHERE category IN ($1, 2) AND flag IS NULL",
        "SELECT a.id FROM article a JOIN author b ON a.author_id = b.id WHERE b.name = $2",
        "SELECT * FROM article WHERE id = ANY($3) OR NOT (category = 1)",
        "WITH x AS (SELECT * FROM article) SELECT * FROM x UNION SELECT * FROM old_article",
        "SELECT * FROM article WHERE id IN (SELECT article_id FROM tag WHERE t = $1)",
        "SELECT now(), random() FROM article FOR UPDATE",
        "INSERT INTO article (id, category) VALUES ($1, 2), (3, $2) RETURNING *",
        "UPDATE article SET category = $1 WHERE id = $2 RETURNING id, category",
        "DELETE FROM article WHERE category = $1",
        "TRUNCATE article",
    ] {
        s.add_near(sql.as_bytes());
    }
    s
}

/// Entries as the cache stores them: a type tag, then Bitcode's payload.
fn typed_seeds() -> Seeds {
    use stampcache::fuzzing::typed_encode;
    let mut s = Seeds::new("typed");
    let rows: Vec<(i64, String, Option<bool>)> =
        vec![(1, "a".into(), None), (2, "b".into(), Some(true))];
    s.add_near(&typed_encode(&rows).expect("rows encode"));
    s.add_near(&typed_encode(&Vec::<(i64, String, Option<bool>)>::new()).expect("encodes"));
    s.add_near(&typed_encode(&String::from("text")).expect("text encodes"));
    s.add_near(&typed_encode(&vec![1_i64, 2, 3]).expect("numbers encode"));
    s
}
