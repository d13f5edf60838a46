// pgjdbc (Debian libpostgresql-jdbc-java) against EventDBX, run with the machine's JDK 17.
//
// pgjdbc uses the extended protocol: setLong goes as binary int8, setString as varchar
// text, setTimestamp as untyped text; after prepareThreshold (5) executions of one
// PreparedStatement it switches to a named server-side statement. RETURN_GENERATED_KEYS
// appends RETURNING *, and DatabaseMetaData runs catalog queries.

import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.CallableStatement;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.postgresql.PGStatement;

public class PgJdbcTest {
    static final String CLIENT = "pgjdbc";
    static final String HOST = env("EVENTDBX_HOST", "127.0.0.1");
    static final String PORT = env("EVENTDBX_PORT", "6363");
    static final String TOKEN = env("EVENTDBX_TOKEN", "");
    static final String READER_TOKEN = env("EVENTDBX_READER_TOKEN", "");
    static final String URL = "jdbc:postgresql://" + HOST + ":" + PORT + "/default";
    static final String AGG = "pgjdbc-order-1";
    static final String INSERT =
        "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version) "
            + "VALUES (?, ?, ?, ?::jsonb, ?)";

    static int failed = 0;
    static Connection conn;
    static long firstEventId;

    interface Check {
        void run() throws Exception;
    }

    static String env(String name, String fallback) {
        String v = System.getenv(name);
        return v == null ? fallback : v;
    }

    static void feature(String name, Check check) {
        try {
            check.run();
            System.out.println("PASS " + CLIENT + " " + name);
        } catch (Throwable t) {
            failed++;
            String reason = t.getClass().getSimpleName() + ": " + t.getMessage();
            if (t instanceof SQLException) {
                reason += " [SQLSTATE " + ((SQLException) t).getSQLState() + "]";
            }
            reason = reason.replace('\n', ' ');
            System.out.println("FAIL " + CLIENT + " " + name + ": "
                + (reason.length() > 400 ? reason.substring(0, 400) : reason));
            if (System.getenv("COMPAT_DEBUG") != null) {
                t.printStackTrace();
            }
            try {
                if (conn != null && !conn.getAutoCommit()) {
                    conn.rollback();
                    conn.setAutoCommit(true);
                }
            } catch (SQLException ignored) {
                // best effort
            }
        }
    }

    static void expect(boolean cond, String message) {
        if (!cond) {
            throw new AssertionError(message);
        }
    }

    static void expectEq(Object actual, Object wanted, String what) {
        if (actual == null ? wanted != null : !actual.equals(wanted)) {
            throw new AssertionError(what + ": got " + actual + ", want " + wanted);
        }
    }

    static Connection connect(String user, String password) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", user);
        p.setProperty("password", password);
        p.setProperty("connectTimeout", "10");
        return DriverManager.getConnection(URL, p);
    }

    static String sqlstateOf(Check check) throws Exception {
        try {
            check.run();
        } catch (SQLException e) {
            return e.getSQLState();
        }
        return "no error";
    }

    static long countEvents(String aggregateId) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT COUNT(*) FROM events WHERE aggregate_type = 'order' AND aggregate_id = ?")) {
            ps.setString(1, aggregateId);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    static void append(Connection c, String id, String type, String payload, Long expected) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(INSERT)) {
            ps.setString(1, "order");
            ps.setString(2, id);
            ps.setString(3, type);
            ps.setString(4, payload);
            if (expected == null) {
                ps.setNull(5, Types.BIGINT);
            } else {
                ps.setLong(5, expected);
            }
            expectEq(ps.executeUpdate(), 1, "update count");
        }
    }

    static List<String> column(ResultSet rs, String name) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) {
            out.add(rs.getString(name));
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].equals("--version")) {
            System.out.println(org.postgresql.util.DriverInfo.DRIVER_VERSION);
            return;
        }
        feature("connect (cleartext)", () -> {
            conn = connect("compat", TOKEN);
            DatabaseMetaData md = conn.getMetaData();
            expectEq(md.getDatabaseProductName(), "PostgreSQL", "product name");
            expect(md.getDatabaseMajorVersion() >= 15, "server major version " + md.getDatabaseMajorVersion());
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT current_database()")) {
                rs.next();
                expectEq(rs.getString(1), "default", "current_database()");
            }
        });
        if (conn == null) {
            conn = connect("compat", TOKEN);
        }

        feature("connect (SCRAM-SHA-256)", () -> {
            try (Connection c = connect(TOKEN.split("_")[1], TOKEN);
                 Statement st = c.createStatement();
                 ResultSet rs = st.executeQuery("SELECT 1")) {
                rs.next();
                expectEq(rs.getInt(1), 1, "SELECT 1");
            }
        });

        feature("apply schema", () -> {
            String source = Files.readString(Path.of(System.getenv().getOrDefault("COMPAT_SCHEMA", "compat/schema.dbx")));
            try (PreparedStatement ps = conn.prepareStatement("CALL apply_schema(?)")) {
                ps.setString(1, source);
                try (ResultSet rs = ps.executeQuery()) {
                    expectEq(column(rs, "aggregate_type"), List.of("order"), "aggregate types");
                }
            }
        });

        feature("create aggregate", () -> {
            append(conn, AGG, "order_created", "{\"status\": \"open\"}", 0L);
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT event_id, version FROM events WHERE aggregate_type = 'order' "
                     + "AND aggregate_id = '" + AGG + "'")) {
                expect(rs.next(), "no event");
                firstEventId = rs.getLong("event_id");
                expectEq(rs.getLong("version"), 1L, "version");
                expect(!rs.next(), "more than one event");
            }
        });

        feature("Statement", () -> {
            try (Statement st = conn.createStatement()) {
                expect(!st.execute("SET application_name = 'compat-pgjdbc'"), "SET returned rows");
                try (ResultSet rs = st.executeQuery("SHOW application_name")) {
                    rs.next();
                    expectEq(rs.getString(1), "compat-pgjdbc", "SHOW application_name");
                }
                int n = st.executeUpdate("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, "
                    + "expected_version) VALUES ('order', '" + AGG + "', 'order_paid', '{\"status\": \"paid\"}', 1)");
                expectEq(n, 1, "executeUpdate count");
                try (ResultSet rs = st.executeQuery("SELECT version, state ->> 'status' AS status FROM aggregates "
                    + "WHERE aggregate_type = 'order' AND aggregate_id = '" + AGG + "'")) {
                    expect(rs.next(), "no aggregate");
                    expectEq(rs.getLong(1), 2L, "version");
                    expectEq(rs.getString("status"), "paid", "status");
                }
            }
        });

        feature("setAutoCommit(false) with commit and rollback", () -> {
            conn.setAutoCommit(false);
            append(conn, AGG, "order_shipped", "{\"status\": \"lost\"}", null);
            append(conn, "pgjdbc-never", "order_created", "{\"status\": \"open\"}", null);
            conn.rollback();
            expectEq(countEvents(AGG), 2L, "events after rollback");
            expectEq(countEvents("pgjdbc-never"), 0L, "rolled-back aggregate");
            append(conn, AGG, "order_shipped", "{\"status\": \"shipped\"}", 2L);
            append(conn, AGG, "order_priced", "{\"amount\": 1250}", 3L);
            try (Connection other = connect("compat", TOKEN)) {
                try (Statement st = other.createStatement(); ResultSet rs = st.executeQuery(
                        "SELECT COUNT(*) FROM events WHERE aggregate_type = 'order' AND aggregate_id = '" + AGG + "'")) {
                    rs.next();
                    expectEq(rs.getLong(1), 2L, "events another session sees before commit");
                }
                conn.commit();
                try (Statement st = other.createStatement(); ResultSet rs = st.executeQuery(
                        "SELECT COUNT(*) FROM events WHERE aggregate_type = 'order' AND aggregate_id = '" + AGG + "'")) {
                    rs.next();
                    expectEq(rs.getLong(1), 4L, "events another session sees after commit");
                }
            }
            conn.setAutoCommit(true);
        });

        feature("apply events", () -> {
            append(conn, AGG, "order_paid", "{\"status\": \"paid again\"}", 4L);
            expectEq(countEvents(AGG), 5L, "events");
        });

        feature("read state", () -> {
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT version, state, state ->> 'amount' AS amount, updated_at FROM aggregates "
                        + "WHERE aggregate_type = ? AND aggregate_id = ?")) {
                ps.setString(1, "order");
                ps.setString(2, AGG);
                try (ResultSet rs = ps.executeQuery()) {
                    expect(rs.next(), "no aggregate");
                    expectEq(rs.getLong("version"), 5L, "version");
                    expectEq(rs.getString("amount"), "1250", "amount");
                    String state = rs.getString("state");
                    expect(state.contains("\"status\"") && state.contains("paid again"), "state " + state);
                    Timestamp updated = rs.getTimestamp("updated_at");
                    expect(updated != null && updated.getTime() > System.currentTimeMillis() - 3_600_000L,
                        "updated_at " + updated);
                    ResultSetMetaData md = rs.getMetaData();
                    expectEq(md.getColumnTypeName(1), "int8", "type of version");
                    expectEq(md.getColumnTypeName(2), "json", "type of state");
                    expectEq(md.getColumnTypeName(4), "timestamptz", "type of updated_at");
                }
            }
        });

        feature("read history", () -> {
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT version, event_type FROM events WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY version")) {
                ps.setString(1, "order");
                ps.setString(2, AGG);
                List<String> got = new ArrayList<>();
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        got.add(rs.getLong(1) + ":" + rs.getString(2));
                    }
                }
                expectEq(got, List.of("1:order_created", "2:order_paid", "3:order_shipped", "4:order_priced",
                    "5:order_paid"), "history");
            }
        });

        feature("PreparedStatement beyond prepareThreshold (setLong, setString, setTimestamp)", () -> {
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT version, event_type FROM events WHERE aggregate_type = ? AND aggregate_id = ? "
                        + "AND version >= ? AND created_at > ? ORDER BY version")) {
                PGStatement pg = ps.unwrap(PGStatement.class);
                expectEq(pg.getPrepareThreshold(), 5, "prepareThreshold");
                for (int i = 0; i < 8; i++) {
                    long from = 1 + (i % 5);
                    ps.setString(1, "order");
                    ps.setString(2, AGG);
                    ps.setLong(3, from);
                    ps.setTimestamp(4, Timestamp.valueOf("2000-01-01 00:00:00"));
                    long rows = 0;
                    long first = -1;
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            if (first < 0) {
                                first = rs.getLong(1);
                            }
                            rows++;
                        }
                    }
                    expectEq(rows, 6 - from, "rows of execution " + (i + 1));
                    expectEq(first, from, "first version of execution " + (i + 1));
                }
                expect(pg.isUseServerPrepare(), "pgjdbc did not switch to a server-prepared statement");
                // A future timestamp finds nothing.
                ps.setString(1, "order");
                ps.setString(2, AGG);
                ps.setLong(3, 1);
                ps.setTimestamp(4, Timestamp.valueOf("2999-01-01 00:00:00"));
                try (ResultSet rs = ps.executeQuery()) {
                    expect(!rs.next(), "rows created after 2999");
                }
            }
            // An INSERT past the threshold too.
            try (PreparedStatement ps = conn.prepareStatement(INSERT)) {
                for (int i = 0; i < 7; i++) {
                    ps.setString(1, "order");
                    ps.setString(2, "pgjdbc-prepared");
                    ps.setString(3, i == 0 ? "order_created" : "order_paid");
                    ps.setString(4, "{\"status\": \"s" + i + "\"}");
                    ps.setLong(5, i);
                    expectEq(ps.executeUpdate(), 1, "update count");
                }
                expect(ps.unwrap(PGStatement.class).isUseServerPrepare(), "INSERT not server-prepared");
            }
            expectEq(countEvents("pgjdbc-prepared"), 7L, "events appended by the prepared INSERT");
        });

        feature("RETURN_GENERATED_KEYS", () -> {
            try (PreparedStatement ps = conn.prepareStatement(INSERT, Statement.RETURN_GENERATED_KEYS)) {
                ps.setString(1, "order");
                ps.setString(2, "pgjdbc-keys");
                ps.setString(3, "order_created");
                ps.setString(4, "{\"status\": \"open\"}");
                ps.setLong(5, 0);
                expectEq(ps.executeUpdate(), 1, "update count");
                try (ResultSet keys = ps.getGeneratedKeys()) {
                    expect(keys.next(), "no generated keys");
                    expect(keys.getLong("event_id") > 0, "event_id " + keys.getLong("event_id"));
                    expectEq(keys.getLong("version"), 1L, "version");
                    expectEq(keys.getString("aggregate_id"), "pgjdbc-keys", "aggregate_id");
                    expect(keys.getString("merkle_root").length() == 64, "merkle_root");
                }
            }
            // Named key columns: pgjdbc appends RETURNING "event_id", "version" (quoted).
            try (PreparedStatement ps = conn.prepareStatement(INSERT, new String[] {"event_id", "version"})) {
                ps.setString(1, "order");
                ps.setString(2, "pgjdbc-keys");
                ps.setString(3, "order_paid");
                ps.setString(4, "{\"status\": \"paid\"}");
                ps.setLong(5, 1);
                ps.executeUpdate();
                try (ResultSet keys = ps.getGeneratedKeys()) {
                    expect(keys.next(), "no generated keys");
                    expectEq(keys.getMetaData().getColumnCount(), 2, "key columns");
                    expectEq(keys.getLong(2), 2L, "version");
                }
            }
        });

        feature("RETURN_GENERATED_KEYS with setAutoCommit(false)", () -> {
            // EventDBX assigns event ids and versions at COMMIT (sql/REFERENCE.md, "Transactions"):
            // inside the block the generated keys come back NULL; after COMMIT they are stored.
            conn.setAutoCommit(false);
            try (PreparedStatement ps = conn.prepareStatement(INSERT, Statement.RETURN_GENERATED_KEYS)) {
                ps.setString(1, "order");
                ps.setString(2, "pgjdbc-keys-tx");
                ps.setString(3, "order_created");
                ps.setString(4, "{\"status\": \"open\"}");
                ps.setLong(5, 0);
                expectEq((long) ps.executeUpdate(), 1L, "update count");
                try (ResultSet keys = ps.getGeneratedKeys()) {
                    expect(keys.next(), "no generated keys row");
                    keys.getLong("event_id");
                    expect(keys.wasNull(), "event_id inside the transaction is assigned only at COMMIT");
                }
            }
            conn.commit();
            conn.setAutoCommit(true);
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT event_id, version FROM events WHERE aggregate_type = 'order' AND aggregate_id = 'pgjdbc-keys-tx'")) {
                expect(rs.next(), "event stored at COMMIT");
                expect(rs.getLong("event_id") > 0, "event_id " + rs.getLong("event_id"));
                expectEq(rs.getLong("version"), 1L, "version");
            }
        });

        feature("getMetaData().getTables()/getColumns()", () -> {
            DatabaseMetaData md = conn.getMetaData();
            List<String> tables;
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                tables = column(rs, "TABLE_NAME");
            }
            expectEq(tables, List.of("aggregates", "events", "outbox", "schemas"), "getTables");
            List<String> cols = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "events", "%")) {
                while (rs.next()) {
                    cols.add(rs.getInt("ORDINAL_POSITION") + ":" + rs.getString("COLUMN_NAME") + ":"
                        + rs.getString("TYPE_NAME") + ":" + rs.getString("IS_NULLABLE"));
                }
            }
            expectEq(cols, List.of("1:event_id:int8:NO", "2:aggregate_type:text:NO", "3:aggregate_id:text:NO",
                "4:version:int8:NO", "5:event_type:text:NO", "6:payload:json:NO", "7:metadata:json:YES",
                "8:note:text:YES", "9:created_at:timestamptz:NO", "10:issued_by:json:YES", "11:hash:text:NO",
                "12:merkle_root:text:NO"), "getColumns(events)");
            try (ResultSet rs = md.getColumns(null, "public", "aggregates", "%")) {
                expectEq(column(rs, "COLUMN_NAME"), List.of("aggregate_type", "aggregate_id", "version", "state",
                    "merkle_root", "created_at", "updated_at"), "getColumns(aggregates)");
            }
            try (ResultSet rs = md.getColumns(null, "public", "outbox", "%")) {
                List<String> outbox = column(rs, "COLUMN_NAME");
                expectEq(outbox.size(), 12, "outbox columns");
                expectEq(outbox.get(0), "event_id", "first outbox column");
            }
            try (ResultSet rs = md.getColumns(null, null, "events", "payload")) {
                expect(rs.next(), "no payload column");
                expectEq(rs.getInt("DATA_TYPE"), Types.OTHER, "DATA_TYPE of json");
            }
        });

        feature("page outbox", () -> {
            Pattern p = Pattern.compile("\"aggregate_id\":\"([^\"]*)\"[^}]*?\"version\":(\\d+)");
            long after = firstEventId - 1;
            List<String> seen = new ArrayList<>();
            try (PreparedStatement ps = conn.prepareStatement("SELECT * FROM read_outbox(?, ?)")) {
                for (int pages = 0; pages < 100; pages++) {
                    ps.setLong(1, after);
                    ps.setLong(2, 4);
                    try (ResultSet rs = ps.executeQuery()) {
                        expect(rs.next(), "no row");
                        String json = rs.getString("events_json");
                        long next = rs.getLong("next_after_event_id");
                        if (json.equals("[]")) {
                            expectEq(next, after, "checkpoint of an empty page");
                            break;
                        }
                        expect(json.contains("\"event_id\":\"" + next + "\""), "page does not end at " + next);
                        Matcher m = p.matcher(json);
                        while (m.find()) {
                            if (m.group(1).equals(AGG)) {
                                seen.add(m.group(2));
                            }
                        }
                        after = next;
                    }
                }
            }
            expectEq(seen, List.of("1", "2", "3", "4", "5"), "own events in the outbox");
        });

        feature("verify", () -> {
            try (CallableStatement cs = conn.prepareCall("{call verify(?, ?)}")) {
                cs.setString(1, "order");
                cs.setString(2, AGG);
                try (ResultSet rs = cs.executeQuery()) {
                    expect(rs.next(), "no row");
                    expectEq(rs.getString("aggregate_id"), AGG, "aggregate_id");
                    expectEq(rs.getLong("version"), 5L, "version");
                    expect(rs.getBoolean("ok"), "ok");
                    expectEq(rs.getString("recomputed_root"), rs.getString("stored_root"), "roots");
                }
            }
        });

        feature("conflict 40001", () -> {
            expectEq(sqlstateOf(() -> append(conn, AGG, "order_paid", "{\"status\": \"paid\"}", 2L)), "40001",
                "SQLSTATE");
            conn.setAutoCommit(false);
            append(conn, "pgjdbc-tx-conflict", "order_created", "{\"status\": \"open\"}", null);
            append(conn, AGG, "order_paid", "{\"status\": \"paid\"}", 2L);
            expectEq(sqlstateOf(() -> conn.commit()), "40001", "SQLSTATE at commit");
            conn.rollback();
            conn.setAutoCommit(true);
            expectEq(countEvents("pgjdbc-tx-conflict"), 0L, "events of the failed transaction");
            expectEq(countEvents(AGG), 5L, "events of the aggregate");
        });

        feature("schema violation 23514", () -> {
            expectEq(sqlstateOf(() -> append(conn, AGG, "order_priced", "{\"amount\": -5}", null)), "23514",
                "SQLSTATE");
            expectEq(countEvents(AGG), 5L, "events of the aggregate");
        });

        feature("permission denied 42501", () -> {
            try (Connection reader = connect("reader", READER_TOKEN)) {
                try (Statement st = reader.createStatement(); ResultSet rs = st.executeQuery(
                        "SELECT version FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id = '" + AGG + "'")) {
                    expect(rs.next(), "no row");
                    expectEq(rs.getLong(1), 5L, "read-only token reads");
                }
                expectEq(sqlstateOf(() -> append(reader, AGG, "order_paid", "{\"status\": \"paid\"}", null)), "42501",
                    "SQLSTATE");
            }
        });

        feature("wrong password 28P01", () -> {
            String wrong = TOKEN.substring(0, TOKEN.length() - 4) + "0000";
            expectEq(sqlstateOf(() -> connect("compat", wrong).close()), "28P01", "SQLSTATE");
        });

        conn.close();
        System.exit(failed == 0 ? 0 : 1);
    }
}
