#-------------------------------------------------------------------------
#
# 020_fuzz.pl
#	  Hostile input: random and malformed arguments to every API function
#	  and to direct INSERT/UPDATE, as a tenant role, as a trusted
#	  application role (with random account settings) and, for the
#	  administrative functions, as a superuser.
#
# Asserts that
#   - every call succeeds or fails with a SQLSTATE of the documented list;
#     the monitoring reads (stream_health, stream_latency(), metrics())
#     never fail, whatever the tenants stored; an error of the extension
#     quotes no value unclipped (its text stays short);
#   - the server never crashes: the three sessions keep their backends, the
#     postmaster's start time does not change, and the server log has no
#     crash, PANIC or assertion failure;
#   - afterwards every stored row satisfies every rule (the invariant query
#     at the end: normalised stream fields, flat trimmed metadata, frame
#     ordering and classification, the latest-frame pointers and counters;
#     no binding or trust names a role that no longer exists).
#
# Among the inputs: LOCK TABLE in every mode, re-sent frames with
# create_frame(on_duplicate => ...), INSERT ... ON CONFLICT DO NOTHING,
# metadata over datastreams.max_metadata_bytes, roles dropped and created
# while bound or trusted, CALL prune_all() inside transaction blocks.
#
# Repeatable: the generated calls depend only on the seed, which is printed;
# rerun with DATASTREAMS_FUZZ_SEED=<seed>.  Bounded: the calls stop after
# DATASTREAMS_FUZZ_SECONDS (default 60) seconds.  The number of calls made
# is printed.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use Encode qw(encode_utf8);
use IPC::Run;
use Time::HiRes qw(time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seed = $ENV{DATASTREAMS_FUZZ_SEED} // (int(time() * 1000) ^ $$) % 2147483647;
my $seconds = $ENV{DATASTREAMS_FUZZ_SECONDS} // 60;
srand($seed);
diag "fuzz seed $seed, $seconds s (repeat with DATASTREAMS_FUZZ_SEED=$seed)";

# What a call may fail with: the errors the README documents for the API
# and the tables, and PostgreSQL's own errors for malformed values.
my %allowed = map { $_ => 1 } qw(
  00000
  42501 P0002 23502 23505 23514 23503 22023 22003 22007 22008 22P02
  54000 55000 0A000 2D000
  22021 22P05 54001);
# calls that must succeed whatever the data
my %must_succeed = map { $_ => 1 } qw(stream_health stream_latency metrics);
# SQLSTATEs raised by the extension itself, checked for short errors in the
# sessions subject to row-level security (PostgreSQL's own errors for bad
# literals in the statement, 22P02 and the like, quote the literal whole,
# and show a superuser the whole failing row of a constraint)
my %ours = map { $_ => 1 } qw(42501 P0002 23502 23505 22023 54000 55000 2D000);

#-------------------------------------------------------------------------
# The cluster
#-------------------------------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('fuzz');
my $utf8_locale = (grep { /^C\.utf-?8$/i } split /\n/, `locale -a 2>/dev/null`)[0];
$node->init(extra => [ '--encoding=UTF8', '--locale=' . ($utf8_locale // 'C') ]);
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'datastreams'
timezone = 'UTC'
# errors are the point here: keep them (and multi-megabyte statements) out
# of the log, which is searched for crashes only
log_min_messages = log
log_min_error_statement = panic
log_statement = none
});
$node->start;
note 'locale ' . ($utf8_locale // 'C');

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $ws = q{E' \\t\\n\\r\\x0B\\f'};	# what the triggers trim

$node->safe_psql('postgres', q{
CREATE ROLE regress_fz_tenant LOGIN;
CREATE ROLE regress_fz_app LOGIN;
CREATE ROLE regress_fz_scratch1;
CREATE ROLE regress_fz_scratch2;
CREATE ROLE regress_fz_scratch3;
CREATE DATABASE fuzz;
ALTER DATABASE fuzz SET statement_timeout = '120s';
});
$node->safe_psql('fuzz', q{
CREATE EXTENSION datastreams;
SELECT datastreams.create_account('fuzz_a', 'regress_fz_tenant');
SELECT datastreams.create_account('fuzz_b');
SELECT datastreams.trust_role('regress_fz_app');

-- What prune() deleted (stream_state counters count frames ever stored)
CREATE TABLE public.fz_pruned (n bigint);
GRANT INSERT ON public.fz_pruned TO PUBLIC;

-- Every SLA a stream ever had (committed), for the classification check
CREATE TABLE public.fz_sla_history (stream_id uuid, sla_ms integer);
CREATE FUNCTION public.fz_log_sla() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
	INSERT INTO public.fz_sla_history VALUES (NEW.id, NEW.sla_ms);
	RETURN NULL;
END $$;
CREATE TRIGGER zz_fz_log_sla AFTER INSERT OR UPDATE ON datastreams.streams
	FOR EACH ROW EXECUTE FUNCTION public.fz_log_sla();

INSERT INTO datastreams.streams (id, account_id, name, symbol, sla_ms, status) VALUES
	('00000000-0000-4000-a000-0000000000a1', 'fuzz_a', 'a1', 'a1', 100, 'active'),
	('00000000-0000-4000-a000-0000000000a2', 'fuzz_a', 'a2', 'a2', 0, 'active'),
	('00000000-0000-4000-a000-0000000000a3', 'fuzz_a', 'a3', 'a3', 10, 'paused'),
	('00000000-0000-4000-a000-0000000000a4', 'fuzz_a', 'a4', 'a4', 0, 'inactive'),
	('00000000-0000-4000-a000-0000000000b1', 'fuzz_b', 'b1', 'b1', 50, 'active'),
	('00000000-0000-4000-a000-0000000000b2', 'fuzz_b', 'b2', 'b2', 0, 'active');
});

#-------------------------------------------------------------------------
# Sessions: one psql each, kept open for the whole run
#-------------------------------------------------------------------------
sub start_session
{
	my ($name, $role) = @_;
	my $s = { name => $name, in => '', out => '', err => '', tag => 0 };
	my @cmd = ('psql', '-XAtq', '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr('fuzz'));
	push @cmd, '-U', $role if defined $role;
	$s->{timer} = IPC::Run::timer(600);
	$s->{h} = IPC::Run::start(\@cmd, '<', \$s->{in}, '>', \$s->{out}, '2>', \$s->{err}, $s->{timer});
	# results of queries are not wanted, only their SQLSTATE
	session_run($s, [ '\o /dev/null', '\set ON_ERROR_ROLLBACK on', '\set VERBOSITY default' ]);
	$s->{pid} = session_pid($s);
	return $s;
}

# Run statements (byte strings, each ending in ';' or a psql meta-command);
# returns one [sqlstate, stderr] per statement, or undef when psql died.
sub session_run
{
	my ($s, $stmts) = @_;
	my @tags;
	for my $stmt (@$stmts)
	{
		die "statement is not a byte string: $stmt" if utf8::is_utf8($stmt);
		my $tag = ++$s->{tag};
		push @tags, $tag;
		if (length($stmt) > 8192)
		{
			# psql reads long statements from a file: writing megabytes to
			# its stdin through IPC::Run can fail with EAGAIN
			my $file = "$tmp/$s->{name}.sql";
			open(my $fh, '>:raw', $file) or die "could not write $file: $!";
			print $fh $stmt, "\n";
			close($fh);
			$stmt = "\\i $file";
		}
		$s->{in} .= "$stmt\n\\echo \@\@R $tag :SQLSTATE\n\\warn \@\@R $tag\n";
	}
	my $last = $tags[-1];
	$s->{timer}->start(600);
	while (!($s->{out} =~ /^\@\@R $last (\S+)$/m && $s->{err} =~ /^\@\@R $last$/m))
	{
		if (!$s->{h}->pumpable)
		{
			$s->{lost} = 'psql exited';
			return undef;
		}
		eval { $s->{h}->pump; };
		if ($@)
		{
			$s->{lost} = "pump failed: $@";
			return undef;
		}
	}
	my @results;
	for my $tag (@tags)
	{
		$s->{out} =~ s/^(.*?)^\@\@R $tag (\S+)\n//ms;
		my ($out, $state) = ($1, $2);
		$s->{err} =~ s/^(.*?)^\@\@R $tag\n//ms;
		my $err = $1;
		$state = '00000' if $state eq ':SQLSTATE';	# no query yet
		push @results, [ $state, $err, $out ];
	}
	return \@results;
}

sub session_pid
{
	my ($s) = @_;
	my $r = session_run($s, [ 'SELECT pg_backend_pid() AS fz_pid \gset', '\echo @@PID :fz_pid' ]);
	return undef unless $r && $r->[1][2] =~ /^\@\@PID (\d+)$/m;
	return $1;
}

#-------------------------------------------------------------------------
# Values: each generator returns an SQL expression (UTF-8 bytes)
#-------------------------------------------------------------------------
sub pick { return $_[ int(rand(@_)) ]; }
sub chance { return rand() < $_[0]; }

sub lit
{
	my ($s) = @_;
	$s = encode_utf8($s) if utf8::is_utf8($s);
	$s =~ s/'/''/g;
	return "'$s'";
}

my @injection = (
	q{'; DROP TABLE datastreams.frames; --}, q{" OR 1=1 --}, q{$$; SELECT pg_sleep(10); $$},
	q{\\'; TRUNCATE datastreams.streams; --}, q{%s%s%s%n}, q{${jndi:ldap://x/y}},
	q{Robert'); DROP TABLE datastreams.accounts;--}, q{fuzz_b}, q{fuzz_a' OR account_id <> 'x},
	q{datastreams/../../etc/passwd}, q{<script>alert(1)</script>}, q{\\x00}, q{\\u0000},
	q{*/ SELECT 1 /*}, q{') RETURNING *; --}, q{%}, q{_}, q{\\}, q{''}, q{"}, q{;},
	q{datastreams_00000000-0000-4000-a000-0000000000b1});
my @unicode = (
	"e\x{301}\x{302}\x{303}", "\x{202E}gnirts lanigiro", "\x{200F}\x{05D0}\x{05D1}", "\x{1F600}\x{1F4A9}",
	"\x{FFFF}", "\x{FFFE}", "\x{10FFFF}", "\x{FEFF}bom", "\x{A0}nbsp\x{A0}", "\x{200B}zero\x{200D}width",
	"\x{130}stanbul", "stra\x{DF}e", "\x{1C5}", "\x{3A3}\x{3C3}\x{3C2}", "\x{FB01}", "\x{2028}\x{2029}",
	"\x{0345}", "\x{1E9E}", "\x{4E2D}\x{6587}", "\x{0627}\x{0644}\x{0639}\x{0631}\x{0628}\x{064A}\x{0629}",
	"\x{3000}ideographic space\x{3000}", "\x{85}next line", "Z\x{335}\x{30D}\x{353}a\x{336}\x{34A}l\x{337}g\x{338}o");
# byte sequences that are not UTF-8; what follows a lead byte is never a quote
my @bad_bytes = ("\xC3\x28", "\xA0\xA1", "\xE2\x28\xA1", "\xF0\x28\x8C\x28", "\xC0\xAF", "\xED\xA0\x80",
	"\xFF", "\xF8\x88\x80\x80\x80", "\xFE\xFE\xFF\xFF");

sub rand_ascii
{
	my ($len) = @_;
	return join '', map { chr(32 + int(rand(95))) } 1 .. $len;
}

sub rand_word
{
	my $w = pick(rand_ascii(1 + int(rand(12))), pick(@unicode), pick(@injection), 'Temp', 'eur/usd', 'x');
	return (chance(0.3) ? pick(' ', "\t", "\n ", '  ', "\r\n") : '') . $w
	  . (chance(0.3) ? pick(' ', "\t", " \n", '  ', "\f", "\x0B") : '');
}

sub rand_text
{
	my $r = rand();
	return 'NULL' if $r < 0.06;
	return lit('') if $r < 0.09;
	return lit(pick(' ', "\t", "\n", " \t\r\n\f\x0B ")) if $r < 0.12;
	return lit(rand_word()) if $r < 0.45;
	return lit(pick(@injection)) if $r < 0.55;
	return lit(join('', map { pick(@unicode) } 0 .. int(rand(3)))) if $r < 0.65;
	return lit(rand_ascii(int(rand(300)))) if $r < 0.72;
	if ($r < 0.76)
	{
		# up to a few megabytes
		my $w = rand_word();
		my $bytes = length(encode_utf8($w)) || 1;
		return "repeat(" . lit($w) . ", " . (1 + int(pick(10, 1000, 100000, 1000000, 3000000) / $bytes)) . ")";
	}
	return lit('y' x (1000 + int(rand(100000)))) if $r < 0.79;
	return "(chr(" . pick(1, 7, 8, 27, 127, 0x85, 0x2028, 0xFFFF) . ") || " . lit(rand_word()) . ")" if $r < 0.83;
	return "(" . lit(rand_word()) . " || chr(0))" if $r < 0.85;
	return lit('a') . " || '" . pick(@bad_bytes) . "z'" if $r < 0.87;
	return "(" . rand_text() . " || " . rand_text() . ")" if $r < 0.92;
	return lit(pick('active', 'paused', 'inactive', 'ok', 'late', 'error', ' ACTIVE ', "Paused\n", 'OK', ' late', 'Error', 'unknown'));
}

my @known_streams = map { "00000000-0000-4000-a000-0000000000$_" } qw(a1 a2 a3 a4 b1 b2);

sub rand_status
{
	return chance(0.3) ? rand_text()
	  : lit(pick('active', 'paused', 'inactive', 'ok', 'late', 'error', ' ACTIVE ', 'Active', 'OK', 'Late ', "\terror", ''));
}

sub rand_uuid_text
{
	my $r = rand();
	return pick(@known_streams) if $r < 0.7;
	return uc(pick(@known_streams)) if $r < 0.75;
	return '{' . pick(@known_streams) . '}' if $r < 0.78;
	return join('-', map { join '', map { sprintf '%x', int(rand(16)) } 1 .. $_ } 8, 4, 4, 4, 12);
}

sub rand_uuid
{
	my $r = rand();
	return 'NULL::uuid' if $r < 0.05;
	return lit(pick('not-a-uuid', '', ' ', '00000000-0000-4000-a000-0000000000a1x', rand_ascii(36), pick(@injection)))
	  . '::uuid'
	  if $r < 0.1;
	return lit(rand_uuid_text()) . '::uuid';
}

# explicit sequences run ahead of the clock, so that frames without a
# sequence (the current time in nanoseconds) come after them too
my $next_sequence = int(time() * 1e9) + 1e15;
# a sequence given recently, for frames sent again
sub recent_sequence
{
	return ($next_sequence - int(rand(3000))) . '::bigint';
}
sub rand_bigint
{
	my $r = rand();
	return 'NULL::bigint' if $r < 0.12;
	if ($r < 0.55)
	{
		$next_sequence += 1 + int(rand(1000));
		return "$next_sequence\::bigint";
	}
	return pick(0, 1, -1, 2, 5, 100, 999999, int(rand(2**31)))   . '::bigint' if $r < 0.75;
	return pick('9223372036854775807', '-9223372036854775808', '9223372036854775806')
	  . '::bigint' if $r < 0.76 && chance(0.1);
	return lit(pick('9223372036854775808', '-9223372036854775809', 'NaN', '-0', ' 12 ', '1e3', '', 'x', '0x10',
		'+7', '١٢'))
	  . '::bigint';
}

sub rand_int
{
	my $r = rand();
	return 'NULL::integer' if $r < 0.12;
	return pick(0, 1, 5, 10, 50, 99, 100, 101, 150, 500, 1000, 100000) . '::integer' if $r < 0.7;
	return pick(-1, -100, '2147483647', '-2147483648') . '::integer' if $r < 0.85;
	return lit(pick('2147483648', '-2147483649', 'NaN', 'Infinity', '1.5', '', 'ten', '-0')) . '::integer';
}

sub rand_interval
{
	my $r = rand();
	return 'NULL::interval' if $r < 0.3;
	return lit(pick('1s', '100ms', '1 minute', '00:00:01', 'P1D', '1 mon', '1 year 2 days', '0.001s'))
	  . '::interval' if $r < 0.7;
	return lit(pick('0', '-1s', '-1 year', '1 mon -31 days', '1000000000 years', '178000000 years',
		'garbage', 'infinity', '', '1 fortnight', pick(@injection)))
	  . '::interval';
}

sub rand_json_scalar
{
	return pick('null', 'true', 'false', '0', '-1', '1.5', '1e400', '-0', '123456789012345678901234567890',
		'"s"', '""', '" spaced "', '"\\u00e9"', '"\\ud83d\\ude00"', '"\\t\\n"', '[]', '{}', '[1, "a"]',
		'{"x": {"y": 1}}', '"' . rand_ascii(5) =~ s/["\\]//gr . '"');
}

sub json_key
{
	my $k = pick(rand_word(), 'Key', ' key ', 'KEY', 'k', '', ' ', "\t", pick(@unicode), pick(@injection), 'a' x 1000);
	$k =~ s/(["\\])/\\$1/g;
	$k =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord($1))/ge;
	return qq{"$k"};
}

sub json_string_value
{
	my $v = pick(rand_word(), pick(@unicode), pick(@injection), '', ' v ');
	$v =~ s/(["\\])/\\$1/g;
	$v =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord($1))/ge;
	return qq{"$v"};
}

# A JSON object as text: mostly string values (metadata-like), sometimes not
sub json_object_text
{
	my ($strings_only) = @_;
	my @pairs;
	for (1 .. int(rand(6)))
	{
		push @pairs, json_key() . ': '
		  . (($strings_only // chance(0.8)) ? json_string_value() : rand_json_scalar());
	}
	return '{' . join(', ', @pairs) . '}';
}

# A well-formed object: distinct plain keys, string values (or, for a
# payload, anything)
sub good_object
{
	my ($purpose) = @_;
	my %pairs;
	for (1 .. int(rand(5)))
	{
		my $k = join '', map { pick('a' .. 'z', 'A' .. 'Z', '_', ' ') } 1 .. 1 + int(rand(8));
		my $v = $purpose eq 'metadata' || chance(0.5) ? json_string_value() : rand_json_scalar();
		$pairs{ lc($k =~ s/^\s+|\s+$//gr) } = qq{"$k": $v};
	}
	return lit('{' . join(', ', values %pairs) . '}') . '::jsonb';
}

sub rand_jsonb
{
	my ($purpose) = @_;	# payload, metadata or any
	my $r = rand();
	return 'NULL::jsonb' if $r < 0.05;
	return good_object($purpose) if $r < 0.3 || ($purpose ne 'any' && $r < 0.6);
	return lit(json_object_text($purpose eq 'metadata' ? 1 : undef)) . '::jsonb' if $r < 0.65;
	return lit(rand_json_scalar()) . '::jsonb' if $r < 0.65;
	return lit(pick('{', '{"a": }', "{'a': 1}", '{"a": 1,}', 'NaN', '', '{"\\ud800": "x"}', '{"a": "\\u0000"}',
		'{"a": "\\uDC00"}', '{"a": 1e1000000}', '[', pick(@injection)))
	  . '::jsonb' if $r < 0.72;
	if ($r < 0.78)
	{
		my $n = pick(10, 1000, 10000, 100000, 300000);
		return "('{\"a\": ' || repeat('{\"a\": ', $n) || '1' || repeat('}', $n) || '}')::jsonb"
		  if chance(0.5);
		return "('{\"a\": ' || repeat('[', $n) || repeat(']', $n) || '}')::jsonb";
	}
	if ($r < 0.83)
	{
		my $n = pick(100, 10000, 100000);
		return "(SELECT jsonb_object_agg(" . pick("'k' || g", "' K' || g || ' '", "'k'") . ", "
		  . pick("'v' || g", 'g', "repeat('v', 100)") . ") FROM generate_series(1, $n) AS g)";
	}
	return "jsonb_build_object('big', repeat('x', " . pick(1000, 1048000, 1048576, 1100000, 5000000) . "))"
	  if $r < 0.87;
	return "jsonb_build_object(" . rand_text() . ", " . rand_text() . ")" if $r < 0.93;
	return lit('{}') . '::jsonb';
}

sub rand_patch
{
	my @pairs;
	for (1 .. 1 + int(rand(4)))
	{
		my $key = pick('name', 'symbol', 'description', 'frequency', 'sla_ms', 'status', 'metadata', 'retention',
			'id', 'account_id', 'created_at', 'updated_at', 'colour', ' name', 'NAME', '');
		my $value;
		if ($key eq 'sla_ms' && chance(0.7))
		{
			$value = pick('0', '5', '50', '100', '1000', '-5', '3.7', '1e20', '2147483648', '"5"', 'null');
		}
		elsif (($key eq 'frequency' || $key eq 'retention') && chance(0.7))
		{
			$value = pick('"1s"', '"100 ms"', '"-1s"', '"0"', '"garbage"', '"1000000000 years"', 'null', '5');
		}
		elsif ($key eq 'status' && chance(0.7))
		{
			$value = pick('"active"', '"paused"', '"inactive"', '" ACTIVE "', '"Paused"', '"deleted"', 'null',
				'1');
		}
		elsif ($key eq 'metadata' && chance(0.7))
		{
			$value = json_object_text(chance(0.8));
		}
		else
		{
			$value = chance(0.7) ? json_string_value() : rand_json_scalar();
		}
		push @pairs, qq{"$key": $value};
	}
	my $r = rand();
	return lit('{' . join(', ', @pairs) . '}') . '::jsonb' if $r < 0.85;
	return rand_jsonb('any');
}

sub rand_frames_array
{
	my $r = rand();
	return rand_jsonb('any') if $r < 0.1;
	if ($r < 0.2)
	{
		my $n = pick(10, 1000, 20000);
		my $start = $next_sequence + 1;
		$next_sequence += $n + 1;
		return "(SELECT jsonb_agg(jsonb_build_object('sequence', g, 'latency_ms', g % 300, 'payload', jsonb_build_object('g', g)))"
		  . " FROM generate_series($start, " . ($start + $n - 1) . ") AS g)";
	}
	my @frames;
	for (1 .. int(rand(6)))
	{
		my @f;
		if (chance(0.7))
		{
			$next_sequence += 1 + int(rand(100));
			push @f, '"sequence": '
			  . (chance(0.8) ? $next_sequence : pick('null', '0', '-1', '1.5', '"7"', '9223372036854775808', '1e30'));
		}
		push @f, '"latency_ms": ' . pick('0', '10', '150', '-3', '2147483648', '"x"', 'null') if chance(0.5);
		push @f, '"status": ' . pick('"ok"', '" LATE "', '"error"', '"bogus"', 'null', '3') if chance(0.4);
		push @f, '"payload": ' . pick(json_object_text(), '[]', '"s"', 'null') if chance(0.5);
		push @f, '"metadata": ' . pick(json_object_text(1), json_object_text(0), '[]', 'null') if chance(0.3);
		push @f, '"extra": 1' if chance(0.05);
		push @frames, chance(0.95) ? '{' . join(', ', @f) . '}' : rand_json_scalar();
	}
	return lit('[' . join(', ', @frames) . ']') . '::jsonb';
}

sub rand_topic
{
	my $r = rand();
	return 'NULL' if $r < 0.05;
	return lit('datastreams/' . rand_uuid_text()) if $r < 0.7;
	return lit(uc('datastreams/' . pick(@known_streams))) if $r < 0.75;
	return lit(pick('datastreams/', 'datastreams', 'datastreams//' . pick(@known_streams),
		'datastreams/' . pick(@known_streams) . '; DROP TABLE datastreams.frames',
		'datastreams/' . pick(@known_streams) . "\n", ' datastreams/' . pick(@known_streams),
		'datastreams/' . pick(@known_streams) . '/x', 'other/' . pick(@known_streams)))
	  if $r < 0.9;
	return rand_text();
}

sub rand_regrole
{
	return pick('NULL::regrole', map { lit($_) . '::regrole' } qw(regress_fz_scratch1 regress_fz_scratch2 regress_fz_scratch3));
}

#-------------------------------------------------------------------------
# Calls
#-------------------------------------------------------------------------
my @stream_columns = (
	[ id => \&rand_uuid ], [ account_id => \&rand_text ], [ name => \&rand_text ], [ symbol => \&rand_text ],
	[ description => \&rand_text ], [ frequency => \&rand_interval ], [ sla_ms => \&rand_int ],
	[ status => \&rand_status ], [ metadata => sub { rand_jsonb('metadata') } ],
	[ created_at => sub { pick('now()', 'NULL', "'2000-01-01'::timestamptz", "'infinity'::timestamptz") } ],
	[ updated_at => sub { pick('now()', 'NULL', "'-infinity'::timestamptz") } ],
	[ retention => \&rand_interval ]);
my @frame_columns = (
	[ id => \&rand_uuid ], [ account_id => \&rand_text ], [ stream_id => \&rand_uuid ],
	[ sequence => \&rand_bigint ], [ payload => sub { rand_jsonb('payload') } ], [ latency_ms => \&rand_int ],
	[ status => \&rand_status ], [ metadata => sub { rand_jsonb('metadata') } ],
	[ created_at => sub { pick('now()', 'NULL', "'2000-01-01'::timestamptz", "'infinity'::timestamptz") } ]);

sub insert_statement
{
	my ($table, $columns, $must) = @_;
	my @cols = grep { $must->{ $_->[0] } || chance(0.35) } @$columns;
	@cols = ($columns->[2]) unless @cols;
	my $rows = chance(0.8) ? 1 : 1 + int(rand(5));
	my @values;
	for (1 .. $rows)
	{
		push @values, '(' . join(', ', map { $_->[1]->() } @cols) . ')';
	}
	return "INSERT INTO datastreams.$table (" . join(', ', map { $_->[0] } @cols) . ') VALUES '
	  . join(', ', @values) . ';';
}

my %calls = (
	create_account => sub { 'SELECT datastreams.create_account(' . rand_text() . ', ' . rand_regrole() . ');' },
	bind_role => sub { 'SELECT datastreams.bind_role(' . rand_text() . ', ' . rand_regrole() . ');' },
	trust_role => sub { 'SELECT datastreams.trust_role(' . rand_regrole() . ');' },
	untrust_role => sub { 'SELECT datastreams.untrust_role(' . rand_regrole() . ');' },
	require_admin => sub { 'SELECT datastreams.require_admin();' },
	current_account => sub { 'SELECT datastreams.current_account();' },
	require_account => sub { 'SELECT datastreams.require_account();' },
	create_stream => sub {
		chance(0.5)
		  ? 'SELECT datastreams.create_stream(' . join(', ', rand_text(), rand_text(), rand_text(),
			rand_interval(), rand_int(), rand_status(), rand_jsonb('metadata')) . ');'
		  : 'SELECT datastreams.create_stream(' . rand_text() . ', ' . rand_text()
		  . (chance(0.5) ? ', status => ' . rand_status() : '')
		  . (chance(0.5) ? ', metadata => ' . rand_jsonb('metadata') : '')
		  . (chance(0.5) ? ', sla_ms => ' . rand_int() : '')
		  . (chance(0.3) ? ', retention => ' . rand_interval() : '') . ');';
	},
	get_stream => sub { 'SELECT datastreams.get_stream(' . rand_uuid() . ');' },
	list_streams => sub { 'SELECT datastreams.list_streams();' },
	update_stream => sub { 'SELECT datastreams.update_stream(' . rand_uuid() . ', ' . rand_patch() . ');' },
	create_frame => sub {
		'SELECT datastreams.create_frame(' . join(', ', rand_uuid(), rand_bigint(), rand_jsonb('payload'),
			rand_int(), rand_status(), rand_jsonb('metadata')) . ');';
	},
	create_frame_again => sub {
		# the same small frame, sent again and again: skipped or 23505
		my $seq = chance(0.5) ? recent_sequence() : rand_bigint();
		return 'SELECT datastreams.create_frame(' . join(', ', rand_uuid(), $seq,
			pick(q{'{"v": 1}'::jsonb}, q{'{}'::jsonb}, rand_jsonb('payload')), pick('0', '5', rand_int()),
			pick(q{'ok'}, q{'OK '}, rand_status()), pick(q{'{}'::jsonb}, q{'{"k": "v"}'::jsonb}))
		  . ', on_duplicate => ' . pick(q{'skip'}, q{'skip'}, q{'error'}, 'NULL', q{'SKIP'}, rand_text()) . ');';
	},
	insert_frames_on_conflict => sub {
		'INSERT INTO datastreams.frames (stream_id, sequence, payload) VALUES (' . rand_uuid() . ', '
		  . (chance(0.5) ? recent_sequence() : rand_bigint()) . q{, '{"v": 1}') ON CONFLICT (stream_id, sequence) DO NOTHING;};
	},
	big_metadata => sub {
		my $n = pick(1000, 60000, 70000, 1000000);
		return pick(
			"SELECT datastreams.create_frame(" . rand_uuid() . ", " . rand_bigint()
			  . ", metadata => jsonb_build_object('k', repeat('m', $n)));",
			"SELECT datastreams.update_stream(" . rand_uuid()
			  . ", jsonb_build_object('metadata', jsonb_build_object(repeat('k', $n), 'v')));",
			"SELECT datastreams.create_stream('big', 'BIG', metadata => jsonb_build_object('k', repeat('m', $n)));");
	},
	lock_table => sub {
		# (in a DO block: LOCK needs a transaction)
		'DO $$BEGIN LOCK TABLE datastreams.' . pick(qw(accounts trusted_roles streams frames stream_state stream_health))
		  . ' IN ' . pick('ACCESS SHARE', 'ROW SHARE', 'ROW EXCLUSIVE', 'SHARE UPDATE EXCLUSIVE', 'SHARE',
			'SHARE ROW EXCLUSIVE', 'EXCLUSIVE', 'ACCESS EXCLUSIVE') . ' MODE' . pick('', ' NOWAIT') . '; END$$;';
	},
	select_for_update => sub {
		'SELECT 1 FROM datastreams.' . pick('streams', 'accounts', 'frames', 'stream_state')
		  . ' FOR ' . pick('UPDATE', 'NO KEY UPDATE', 'SHARE', 'KEY SHARE') . ' NOWAIT;';
	},
	prune_all => sub { 'CALL datastreams.prune_all();' },
	prune_all_admin => sub { "CALL datastreams.prune_all() \\gset fz_\nINSERT INTO public.fz_pruned VALUES (:fz_pruned);" },
	recycle_role => sub {
		# a bound or trusted role dropped, and created again (perhaps with
		# its old OID one day): no binding or trust may survive it
		my $r = 'regress_fz_scratch' . (1 + int(rand(3)));
		return "DROP ROLE IF EXISTS $r; CREATE ROLE $r;";
	},
	forget_dropped_roles => sub { 'SELECT * FROM datastreams.forget_dropped_roles();' },
	list_frames => sub {
		'SELECT datastreams.list_frames(' . join(', ', rand_uuid(), rand_int(), rand_bigint()) . ');';
	},
	frames_since => sub {
		'SELECT datastreams.frames_since(' . join(', ', rand_uuid(), rand_bigint(), rand_int()) . ');';
	},
	latest_frame => sub { 'SELECT datastreams.latest_frame(' . rand_uuid() . ');' },
	push => sub { 'SELECT datastreams.push(' . rand_topic() . ', ' . rand_jsonb('payload') . ');' },
	channel => sub { 'SELECT datastreams.channel(' . rand_uuid() . ');' },
	ingest => sub { 'SELECT datastreams.ingest(' . rand_uuid() . ', ' . rand_frames_array() . ');' },
	insert_streams => sub { insert_statement('streams', \@stream_columns, { name => 1, symbol => 1 }) },
	insert_frames => sub { insert_statement('frames', \@frame_columns, { stream_id => 1 }) },
	insert_frames_select => sub {
		my $n = pick(2, 100, 5000);
		my $start = $next_sequence + 1;
		$next_sequence += $n + 1;
		return 'INSERT INTO datastreams.frames (stream_id, sequence, latency_ms, status, payload) SELECT '
		  . rand_uuid() . ", g, (g % 200)::integer, " . rand_status() . ", jsonb_build_object('g', g) FROM generate_series($start, "
		  . ($start + $n - 1) . ') AS g;';
	},
	update_streams => sub {
		my @cols = grep { chance(0.3) } @stream_columns;
		@cols = ($stream_columns[3]) unless @cols;
		return 'UPDATE datastreams.streams SET ' . join(', ', map { "$_->[0] = " . $_->[1]->() } @cols)
		  . ' WHERE id = ' . rand_uuid() . ';';
	},
	update_frames => sub { 'UPDATE datastreams.frames SET latency_ms = ' . rand_int() . ' WHERE stream_id = ' . rand_uuid() . ';' },
	delete_streams => sub { 'DELETE FROM datastreams.streams WHERE id = ' . rand_uuid() . ';' },
	metrics => sub { 'SELECT datastreams.metrics();' },
	stream_latency => sub { 'SELECT * FROM datastreams.stream_latency();' },
	stream_health => sub { 'SELECT * FROM datastreams.stream_health;' },
	prune => sub { 'INSERT INTO public.fz_pruned SELECT datastreams.prune();' },
	reset_metrics => sub { 'SELECT datastreams.reset_metrics();' },
	set_account => sub {
		chance(0.5)
		  ? 'SET datastreams.account_id = ' . pick(lit('fuzz_a'), lit('fuzz_b'), lit(''), lit(rand_word())) . ';'
		  : "SELECT set_config('datastreams.account_id', " . pick(lit('fuzz_a'), lit('fuzz_b'), rand_text()) . ', false);';
	},
	reset_account => sub { 'RESET datastreams.account_id;' },
);
$calls{set_account_local} = sub {
	"SELECT set_config('datastreams.account_id', " . pick(lit('fuzz_a'), lit('fuzz_b'), rand_text()) . ', true);';
};

my @tenant_calls = (
	(qw(create_stream update_stream create_frame create_frame push ingest insert_streams insert_frames
	  insert_frames update_streams get_stream list_streams list_frames frames_since latest_frame channel
	  create_frame_again)) x 3,
	qw(create_account bind_role trust_role untrust_role require_admin current_account require_account
	  insert_frames_select update_frames delete_streams set_account reset_account reset_account
	  metrics stream_latency stream_health prune reset_metrics insert_frames_on_conflict big_metadata
	  lock_table lock_table select_for_update prune_all forget_dropped_roles));
my @app_calls = (@tenant_calls, qw(set_account set_account set_account set_account_local));
my @admin_calls = qw(create_account create_account bind_role trust_role untrust_role require_admin current_account
  prune reset_metrics metrics stream_health stream_latency recycle_role recycle_role forget_dropped_roles
  prune_all_admin);

#-------------------------------------------------------------------------
# The run
#-------------------------------------------------------------------------
my $start_time = $node->safe_psql('fuzz', 'SELECT pg_postmaster_start_time()');
my %session = (
	tenant => start_session('tenant', 'regress_fz_tenant'),
	app => start_session('app', 'regress_fz_app'),
	admin => start_session('admin', undef));
ok(defined $session{$_}{pid}, "$_ session connected") for sort keys %session;

my (%count, %outcomes, %succeeded, @unexpected, $lost);
my $deadline = time() + $seconds;
my $units = 0;
while (time() < $deadline && !$lost)
{
	my $who = pick(('tenant') x 6, ('app') x 6, 'admin');
	my @names;
	my $block = chance(0.15) && $who ne 'admin';
	for (1 .. ($block ? 2 + int(rand(5)) : 1))
	{
		push @names, pick(@{ { tenant => \@tenant_calls, app => \@app_calls, admin => \@admin_calls }->{$who} });
	}
	my @stmts = map { $calls{$_}->() } @names;
	if ($block)
	{
		unshift @stmts, 'BEGIN;';
		unshift @names, 'BEGIN';
		push @stmts, chance(0.7) ? 'COMMIT;' : 'ROLLBACK;';
		push @names, 'END';
	}
	my $t0 = time();
	my $results = session_run($session{$who}, \@stmts);
	my $took = time() - $t0;
	note sprintf("slow unit (%.1f s): %s", $took, substr(join(' ', @stmts), 0, 300)) if $took > 2;
	$units++;
	if (!$results)
	{
		$lost = "$who session lost ($session{$who}{lost}) during: " . substr(join(' ', @stmts), 0, 2000)
		  . "\nstderr: " . substr($session{$who}{err}, 0, 2000);
		last;
	}
	for my $i (0 .. $#stmts)
	{
		my ($state, $err) = @{ $results->[$i] };
		my $call = "$who:$names[$i]";
		$count{$who}++;
		$outcomes{$state}++;
		$succeeded{ $names[$i] }++ if $state eq '00000';
		push @unexpected, "$call -> $state\n  statement: " . substr($stmts[$i], 0, 500) . "\n  error: "
		  . substr($err, 0, 1000)
		  if !$allowed{$state} || ($must_succeed{ $names[$i] } && $state ne '00000');
		# psql prints the error, DETAIL, HINT, CONTEXT and at most a line of
		# the statement: a few hundred bytes unless a value went in whole
		push @unexpected, "$call -> $state with an error of " . length($err) . " bytes\n  statement: "
		  . substr($stmts[$i], 0, 500) . "\n  error: " . substr($err, 0, 1000)
		  if $ours{$state} && $who ne 'admin' && length($err) > 3000;
	}
}

my $total = 0;
$total += $_ for values %count;
diag sprintf('fuzz: %d calls in %d units (%s); outcomes: %s', $total, $units,
	join(', ', map { "$_ $count{$_}" } sort keys %count),
	join(', ', map { "$_ x$outcomes{$_}" } sort keys %outcomes));

ok(!$lost, 'no session lost its connection') or diag $lost;
is(scalar(@unexpected), 0, 'every call succeeded or failed with a documented SQLSTATE')
  or diag join("\n", @unexpected[ 0 .. ($#unexpected < 19 ? $#unexpected : 19) ]);
for my $name (qw(create_stream update_stream create_frame push ingest insert_streams insert_frames update_streams
	get_stream list_frames frames_since latest_frame create_account create_frame_again recycle_role
	prune_all_admin big_metadata lock_table))
{
	ok($succeeded{$name}, "some $name calls succeeded") or diag "no $name call succeeded";
}

# The connections survived: same backends as at the start
unless ($lost)
{
	for my $name (sort keys %session)
	{
		is(session_pid($session{$name}), $session{$name}{pid}, "$name session still has its backend");
		$session{$name}{in} .= "\\q\n";
		$session{$name}{h}->finish;
	}
}
for my $s (values %session)
{
	$s->{h}->kill_kill if $s->{h}->pumpable;
}
# (the test cluster has restart_after_crash = off: after a crash it is down)
my ($rc, $now_start) = $node->psql('fuzz', 'SELECT pg_postmaster_start_time()');
my $up = $rc == 0;
ok($up && $now_start eq $start_time, 'the server is up and did not restart');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|was terminated|PANIC|TRAP:|server process .* exited with exit code/,
	'no crash in the server log');
unless ($up)
{
	fail('every stored row satisfies every rule (the server is down)');
	$node->stop('fast', fail_ok => 1);
	done_testing();
	exit;
}

#-------------------------------------------------------------------------
# Every stored row satisfies every rule
#-------------------------------------------------------------------------
$node->safe_psql('fuzz', qq{
CREATE FUNCTION public.fz_metadata_ok(m jsonb) RETURNS boolean LANGUAGE sql AS \$\$
	SELECT jsonb_typeof(m) = 'object' AND NOT EXISTS (
		SELECT FROM jsonb_each(m) AS e
		 WHERE e.key = '' OR e.key <> lower(btrim(e.key, $ws))
		    OR jsonb_typeof(e.value) <> 'string'
		    OR e.value #>> '{}' <> btrim(e.value #>> '{}', $ws))
\$\$;
});
# The publisher folds frames into stream_state a moment after they commit:
# fold every stream now, so that the counters checked below are current
# (and the fold itself is checked against the frames).
$node->safe_psql('fuzz', 'SELECT count(datastreams.fold_stream_state(id)) FROM datastreams.streams');
my $violations = $node->safe_psql('fuzz', qq{
SELECT 'stream ' || s.id || ': ' || v
  FROM datastreams.streams AS s, LATERAL (VALUES
	(CASE WHEN s.name = '' OR s.name <> btrim(s.name, $ws) THEN 'name not trimmed or blank' END),
	(CASE WHEN s.symbol = '' OR s.symbol <> upper(btrim(s.symbol, $ws)) THEN 'symbol not trimmed upper case' END),
	(CASE WHEN s.description <> btrim(s.description, $ws) THEN 'description not trimmed' END),
	(CASE WHEN s.status NOT IN ('inactive', 'active', 'paused') THEN 'status ' || s.status END),
	(CASE WHEN s.sla_ms < 0 THEN 'negative sla' END),
	(CASE WHEN s.frequency <= '0' THEN 'frequency not positive' END),
	(CASE WHEN s.retention <= '0' THEN 'retention not positive' END),
	(CASE WHEN NOT public.fz_metadata_ok(s.metadata) THEN 'metadata ' || left(s.metadata::text, 200) END),
	(CASE WHEN NOT EXISTS (SELECT FROM datastreams.accounts AS a WHERE a.id = s.account_id) THEN 'no account' END)
  ) AS c (v)
 WHERE v IS NOT NULL
UNION ALL
SELECT 'frame ' || f.id || ': ' || v
  FROM datastreams.frames AS f JOIN datastreams.streams AS s ON s.id = f.stream_id, LATERAL (VALUES
	(CASE WHEN f.sequence <= 0 THEN 'sequence not positive' END),
	(CASE WHEN f.status NOT IN ('ok', 'late', 'error') THEN 'status ' || f.status END),
	(CASE WHEN f.latency_ms < 0 THEN 'negative latency' END),
	(CASE WHEN jsonb_typeof(f.payload) <> 'object' THEN 'payload not an object' END),
	(CASE WHEN NOT public.fz_metadata_ok(f.metadata) THEN 'metadata ' || left(f.metadata::text, 200) END),
	(CASE WHEN f.account_id <> s.account_id THEN 'account ' || f.account_id || ' of stream of ' || s.account_id END)
  ) AS c (v)
 WHERE v IS NOT NULL
UNION ALL
-- sequences of a stream increase from one transaction to the next
SELECT 'stream ' || stream_id || ': frames of transaction ' || x || ' start at ' || mn || ', not above ' || prev_max
  FROM (SELECT stream_id, x, mn, max(mx) OVER (PARTITION BY stream_id ORDER BY x
				ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_max
		  FROM (SELECT stream_id, xmin::text::bigint AS x, min(sequence) AS mn, max(sequence) AS mx
				  FROM datastreams.frames GROUP BY 1, 2) AS g) AS o
 WHERE mn <= prev_max
UNION ALL
-- an "ok" frame cannot have a latency above every SLA its stream ever had
SELECT 'frame ' || f.id || ': ok with latency ' || f.latency_ms || ', SLA always in ' || h.mn || '..' || h.mx
  FROM datastreams.frames AS f
  JOIN (SELECT stream_id, min(sla_ms) AS mn, max(sla_ms) AS mx FROM public.fz_sla_history GROUP BY 1) AS h
	ON h.stream_id = f.stream_id
 WHERE f.status = 'ok' AND h.mn > 0 AND f.latency_ms > h.mx
UNION ALL
-- the latest-frame pointer and the counters
SELECT 'stream ' || s.id || ': ' || v
  FROM datastreams.streams AS s
  LEFT JOIN datastreams.stream_state AS st ON st.stream_id = s.id
  CROSS JOIN LATERAL (SELECT count(*) AS n, max(f.sequence) AS mx,
							 count(*) FILTER (WHERE f.status = 'ok') AS ok,
							 count(*) FILTER (WHERE f.status = 'late') AS late,
							 count(*) FILTER (WHERE f.status = 'error') AS error,
							 coalesce(sum(f.latency_ms), 0) AS latency
						FROM datastreams.frames AS f WHERE f.stream_id = s.id) AS fa,
  LATERAL (VALUES
	(CASE WHEN (fa.n = 0) <> (st.stream_id IS NULL) THEN fa.n || ' frames, pointer ' || coalesce(st.latest_sequence::text, 'missing') END),
	(CASE WHEN st.latest_sequence <> fa.mx THEN 'latest_sequence ' || st.latest_sequence || ', highest ' || fa.mx END),
	(CASE WHEN st.stream_id IS NOT NULL AND NOT EXISTS (
			SELECT FROM datastreams.frames AS f
			 WHERE f.id = st.latest_frame_id AND f.stream_id = s.id
			   AND f.sequence = st.latest_sequence AND f.created_at = st.latest_created_at)
		  THEN 'latest_frame_id is not the frame with the latest sequence' END),
	(CASE WHEN st.account_id <> s.account_id THEN 'stream_state account ' || st.account_id END),
	(CASE WHEN CASE WHEN (SELECT coalesce(sum(n), 0) FROM public.fz_pruned) = 0
					THEN (st.frames_ok, st.frames_late, st.frames_error, st.latency_ms_total)
						 IS DISTINCT FROM (fa.ok, fa.late, fa.error, fa.latency)
					ELSE st.frames_ok < fa.ok OR st.frames_late < fa.late OR st.frames_error < fa.error
						 OR st.latency_ms_total < fa.latency END
			   AND st.stream_id IS NOT NULL
		  THEN 'counters ' || row(st.frames_ok, st.frames_late, st.frames_error, st.latency_ms_total)::text
			   || ', frames ' || row(fa.ok, fa.late, fa.error, fa.latency)::text END)
  ) AS c (v)
 WHERE v IS NOT NULL
UNION ALL
SELECT 'account ' || quote_literal(a.id) || ': blank id'
  FROM datastreams.accounts AS a WHERE btrim(a.id) = ''
UNION ALL
SELECT 'account ' || quote_literal(a.id) || ': bound to dropped role ' || a.role::oid
  FROM datastreams.accounts AS a
 WHERE a.role IS NOT NULL AND NOT EXISTS (SELECT FROM pg_roles AS r WHERE r.oid = a.role::oid)
UNION ALL
SELECT 'trusted dropped role ' || t.role::oid
  FROM datastreams.trusted_roles AS t WHERE NOT EXISTS (SELECT FROM pg_roles AS r WHERE r.oid = t.role::oid)
ORDER BY 1
LIMIT 50});
is($violations, '', 'every stored row satisfies every rule') or diag $violations;

# What the tenant and the trusted role (acting for fuzz_b) can read now
my $foreign = q{
SELECT (SELECT count(*) FROM datastreams.accounts WHERE id <> datastreams.current_account()) +
	   (SELECT count(*) FROM datastreams.streams WHERE account_id <> datastreams.current_account()) +
	   (SELECT count(*) FROM datastreams.frames WHERE account_id <> datastreams.current_account()) +
	   (SELECT count(*) FROM datastreams.stream_state WHERE account_id <> datastreams.current_account()) +
	   (SELECT count(*) FROM datastreams.stream_health WHERE account_id <> datastreams.current_account()) +
	   (SELECT count(*) FROM datastreams.stream_latency() WHERE account_id <> datastreams.current_account()) +
	   (SELECT count(*) FROM regexp_matches(datastreams.metrics(), 'account_id="([^"]*)"', 'g') AS m
		 WHERE m[1] <> datastreams.current_account())};
is($node->safe_psql('fuzz', $foreign, extra_params => [ '-U', 'regress_fz_tenant' ]), '0',
	"the tenant reads no other account's rows or metrics");
is($node->safe_psql('fuzz', "SET datastreams.account_id = 'fuzz_b';\n$foreign", extra_params => [ '-U', 'regress_fz_app' ]),
	'0', "the trusted role acting for fuzz_b reads no other account's rows or metrics");

my $stored = $node->safe_psql('fuzz', q{
SELECT (SELECT count(*) FROM datastreams.accounts) || ' accounts, ' ||
	   (SELECT count(*) FROM datastreams.streams) || ' streams, ' ||
	   (SELECT count(*) FROM datastreams.frames) || ' frames'});
diag "fuzz: stored $stored";

$node->stop;
done_testing();
