#-------------------------------------------------------------------------
#
# HttpHelper.pm
#	  Shared code of the datastreams-http TAP tests (test/t/1xx_http_*.pl):
#	  a node with the gateway's roles, accounts and tokens; the gateway run
#	  in the background on a port it picks itself; HTTP requests through
#	  curl; Server-Sent Events read by curl into a file; headless Chromium
#	  driven through the DevTools protocol on a pipe (no network port).
#
# Loaded with "use HttpHelper;" (test/perl is on prove's include path); not a test.
#
#-------------------------------------------------------------------------
package HttpHelper;

use strict;
use warnings;

use Exporter 'import';
use File::Temp ();
use IPC::Run ();
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use ListenHelper qw(new_ds_node wait_until);

our @EXPORT = qw(new_gateway_node make_token start_gateway stop_gateway gateway_alive
  http sse_start sse_stop sse_events insert_frames chromium_start chromium_eval
  chromium_stop access_log_lines wait_until $GW_ROLE);

our $GW_ROLE = 'regress_http_gw';

my %children;					# pid => what, killed by END

$SIG{$_} //= sub { exit 1 } for qw(TERM INT HUP);

# (local $?: reaping here must not change the test's exit status)
END
{
	local $?;
	kill 'KILL', $_ for keys %children;
	waitpid($_, 0) for keys %children;
}

# A node with datastreams, the gateway's trusted role (allowed to resolve
# tokens) and accounts regress_http_a and regress_http_b.
sub new_gateway_node
{
	my ($name) = @_;
	my $node = new_ds_node($name);

	$node->safe_psql('postgres', qq{
CREATE ROLE $GW_ROLE LOGIN;
SELECT datastreams.trust_role('$GW_ROLE');
GRANT EXECUTE ON FUNCTION datastreams.resolve_api_token(text) TO $GW_ROLE;
SELECT datastreams.create_account('regress_http_a');
SELECT datastreams.create_account('regress_http_b');
});
	return $node;
}

# A new token of $account (and its id).
sub make_token
{
	my ($node, $account, $note) = @_;
	$note //= 'test';
	my $out = $node->safe_psql('postgres',
		"SELECT id || ' ' || token FROM datastreams.create_api_token('$account', '$note')");
	my ($id, $token) = split / /, $out;
	return wantarray ? ($token, $id) : $token;
}

# The installed gateway (PATH, then pg_config --bindir), or the program
# named by DATASTREAMS_HTTP_PROGRAM (e.g. a build with AddressSanitizer).
sub program
{
	return $ENV{DATASTREAMS_HTTP_PROGRAM} if $ENV{DATASTREAMS_HTTP_PROGRAM};
	for my $dir (split /:/, $ENV{PATH} // '')
	{
		return "$dir/datastreams-http" if -x "$dir/datastreams-http";
	}
	my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
	my $bindir = `$pg_config --bindir 2>/dev/null`;
	chomp $bindir;
	return "$bindir/datastreams-http"
	  if $bindir ne '' && -x "$bindir/datastreams-http";
	BAIL_OUT('datastreams-http is not installed (make install)');
}

# Start the gateway for $node on a free port (it binds port 0 and prints
# the port).  Options: role, pool, metrics (1: a metrics listener, as the
# superuser), args (more arguments), wrapper (e.g. valgrind command).
# Returns { pid, port, url, metrics_url, log, err }.
sub start_gateway
{
	my ($node, %opt) = @_;
	my $role = $opt{role} // $GW_ROLE;
	my $dir = $PostgreSQL::Test::Utils::tmp_check;
	my $n = ++$HttpHelper::started;
	# named after this test's process: every test file shares tmp_check
	my $name = "$dir/gateway_" . $$ . "_$n";
	my %gw = (log => "$name.access.log", err => "$name.err");
	my $conninfo = $node->connstr('postgres') . " user=$role";
	my @cmd = (@{ $opt{wrapper} // [] }, program(), '--listen', '127.0.0.1:0',
		'--dbname', $conninfo, '--pool', $opt{pool} // 2);

	push @cmd, '--metrics-listen', '127.0.0.1:0', '--metrics-dbname',
	  $node->connstr('postgres') . ' user=postgres'
	  if $opt{metrics};
	push @cmd, @{ $opt{args} // [] };
	note "starting: @cmd";
	my $pid = fork;
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null') or POSIX::_exit(127);
		open(STDOUT, '>', $gw{log}) or POSIX::_exit(127);
		open(STDERR, '>', $gw{err}) or POSIX::_exit(127);
		exec { $cmd[0] } @cmd or POSIX::_exit(127);
	}
	$children{$pid} = 'datastreams-http';
	$gw{pid} = $pid;
	my $ready = wait_until(sub { slurp($gw{err}) =~ /ready \(pool/ }, $opt{start_timeout} // 60);
	my $err = slurp($gw{err});
	BAIL_OUT("datastreams-http did not start:\n$err") unless $ready;
	($gw{port}) = $err =~ m{API listening on http://127\.0\.0\.1:(\d+)/};
	$gw{url} = "http://127.0.0.1:$gw{port}";
	if ($err =~ m{metrics listening on http://127\.0\.0\.1:(\d+)/})
	{
		$gw{metrics_url} = "http://127.0.0.1:$1";
	}
	return \%gw;
}

sub slurp
{
	my ($file) = @_;
	return '' unless -e $file;
	open(my $fh, '<', $file) or die "could not open $file: $!";
	local $/;
	my $text = <$fh>;
	close $fh;
	return $text;
}

# The access log's lines so far.
sub access_log_lines
{
	my ($gw) = @_;
	return split /\n/, slurp($gw->{log});
}

sub gateway_alive
{
	my ($gw) = @_;
	return waitpid($gw->{pid}, POSIX::WNOHANG()) == 0;
}

# Send $signal and reap; returns the exit status (-1 if it had to be killed).
sub stop_gateway
{
	my ($gw, $signal) = @_;
	kill($signal // 'TERM', $gw->{pid});
	my $deadline = time + 30;
	while (waitpid($gw->{pid}, POSIX::WNOHANG()) == 0)
	{
		if (time > $deadline)
		{
			kill 'KILL', $gw->{pid};
			waitpid($gw->{pid}, 0);
			delete $children{ $gw->{pid} };
			return -1;
		}
		sleep 0.05;
	}
	my $status = $?;
	delete $children{ $gw->{pid} };
	return $status;
}

# http($method, $url, token => T, body => text, headers => [..], curl => [..])
# Returns { status, body, headers (lower-cased name => value), json }.
sub http
{
	my ($method, $url, %opt) = @_;
	my $tmp = File::Temp->newdir();
	my @cmd = ('curl', '-s', '-S', '-g', '--max-time', $opt{timeout} // 30, '-X', $method,
		'-o', "$tmp/body", '-D', "$tmp/headers", '-w', '%{http_code}');
	push @cmd, '-H', "Authorization: Bearer $opt{token}" if defined $opt{token};
	push @cmd, '-H', $_ for @{ $opt{headers} // [] };
	if (defined $opt{body})
	{
		open(my $fh, '>', "$tmp/request") or die;
		print $fh $opt{body};
		close $fh;
		push @cmd, '-H', 'Content-Type: application/json', '--data-binary', "\@$tmp/request";
	}
	push @cmd, @{ $opt{curl} // [] }, $url;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	my %res = (status => $out + 0, body => slurp("$tmp/body"), curl_error => $err);
	for my $line (split /\r?\n/, slurp("$tmp/headers"))
	{
		$res{headers}{ lc $1 } = $2 if $line =~ /^([^:]+):\s*(.*)$/;
	}
	$res{json} = eval { JSON::PP->new->allow_nonref->decode($res{body}) };
	return \%res;
}

# An event stream read by curl into a file: sse_start($url, token =>,
# headers => [...]); returns { pid, file }.
sub sse_start
{
	my ($url, %opt) = @_;
	my $file = $PostgreSQL::Test::Utils::tmp_check . '/sse_' . $$ . '_' . (++$HttpHelper::sse) . '.txt';
	# curl creates the file only when the first bytes arrive
	unlink $file, "$file.headers";
	my @cmd = ('curl', '-s', '-N', '-g', '-o', $file, '-D', "$file.headers");
	push @cmd, '-H', "Authorization: Bearer $opt{token}" if defined $opt{token};
	push @cmd, '-H', $_ for @{ $opt{headers} // [] };
	push @cmd, $url;
	my $pid = fork;
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		exec { $cmd[0] } @cmd or POSIX::_exit(127);
	}
	$children{$pid} = 'curl';
	return { pid => $pid, file => $file };
}

sub sse_stop
{
	my ($sse) = @_;
	kill 'TERM', $sse->{pid};
	waitpid($sse->{pid}, 0);
	delete $children{ $sse->{pid} };
}

# The complete events received so far: a list of { id, data, json }; the
# "retry" preamble and keepalive comments are left out.
sub sse_events
{
	my ($sse) = @_;
	my $text = slurp($sse->{file});
	my @events;

	$text =~ s/(?:[^\n]|\n(?!\n))*\z// unless $text =~ /\n\n\z/;
	for my $block (split /\n\n/, $text)
	{
		my %ev;
		for my $line (split /\n/, $block)
		{
			next if $line =~ /^:/;
			$ev{id} = $1 if $line =~ /^id: ?(.*)$/;
			$ev{data} .= (defined $ev{data} ? "\n" : '') . $1 if $line =~ /^data: ?(.*)$/;
		}
		next unless defined $ev{data};
		$ev{json} = eval { decode_json($ev{data}) };
		push @events, \%ev;
	}
	return @events;
}

# Insert $n frames into $stream as the superuser acting for $account, in
# separate transactions; payload {"price": <start + i>}.  Returns their
# sequences (text).
sub insert_frames
{
	my ($node, $account, $stream, $n, $start) = @_;
	$start //= 1;
	my $sql = "SET datastreams.account_id = '$account';\n";
	$sql .= "SELECT sequence FROM datastreams.create_frame('$stream', payload => '{\"price\": "
	  . ($start + $_) . "}');\n"
	  for 0 .. $n - 1;
	return split /\n/, $node->safe_psql('postgres', $sql);
}

# ---- headless Chromium over --remote-debugging-pipe ----

# Start Chromium (no sandbox: tests may run as root in containers), open
# $url in a new page; returns a handle for chromium_eval.
sub chromium_start
{
	my ($url) = @_;
	my $chromium = '/usr/bin/chromium';
	BAIL_OUT("$chromium is missing (Debian package chromium)") unless -x $chromium;
	my $profile = File::Temp->newdir(DIR => $PostgreSQL::Test::Utils::tmp_check);
	my $log = $PostgreSQL::Test::Utils::tmp_check . '/chromium.log';
	pipe(my $to_r, my $to_w) or die "pipe: $!";
	pipe(my $from_r, my $from_w) or die "pipe: $!";
	my $pid = fork;
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		# the protocol is on descriptors 3 (commands) and 4 (replies)
		my ($in, $out) = (POSIX::dup(fileno($to_r)), POSIX::dup(fileno($from_w)));
		POSIX::dup2($in, 3);
		POSIX::dup2($out, 4);
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $log);
		open(STDERR, '>>', $log);
		exec($chromium, '--headless', '--no-sandbox', '--disable-gpu',
		  '--remote-debugging-pipe', "--user-data-dir=$profile", '--no-first-run',
		  '--no-default-browser-check', '--disable-extensions', '--disable-sync',
		  '--disable-background-networking', '--disable-component-update',
		  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
		  'about:blank') or POSIX::_exit(127);
	}
	close $to_r;
	close $from_w;
	$children{$pid} = 'chromium';
	my $c = { pid => $pid, in => $to_w, out => $from_r, buf => '', id => 0, profile => $profile };
	my $target = cdp($c, 'Target.createTarget', { url => $url });
	die 'Target.createTarget failed: ' . encode_json($target) unless $target->{result};
	my $attached = cdp($c, 'Target.attachToTarget',
		{ targetId => $target->{result}{targetId}, flatten => JSON::PP::true });
	$c->{session} = $attached->{result}{sessionId};
	return $c;
}

sub cdp
{
	my ($c, $method, $params, $session) = @_;
	my $id = ++$c->{id};
	my %msg = (id => $id, method => $method, params => $params // {});
	$msg{sessionId} = $session if $session;
	syswrite($c->{in}, encode_json(\%msg) . "\0") or die "chromium: $!";
	my $deadline = time + 60;
	for (;;)
	{
		while ($c->{buf} =~ s/^([^\0]*)\0//)
		{
			my $reply = decode_json($1);
			return $reply if ($reply->{id} // -1) == $id;
		}
		die "chromium did not answer $method" if time > $deadline;
		my $rin = '';
		vec($rin, fileno($c->{out}), 1) = 1;
		next unless select($rin, undef, undef, 1);
		my $n = sysread($c->{out}, $c->{buf}, 1 << 16, length $c->{buf});
		die "chromium closed the pipe" unless $n;
	}
}

# The value of a JavaScript expression in the page.
sub chromium_eval
{
	my ($c, $expression) = @_;
	my $r = cdp($c, 'Runtime.evaluate',
		{ expression => $expression, returnByValue => JSON::PP::true }, $c->{session});
	return $r->{result}{result}{value};
}

sub chromium_stop
{
	my ($c) = @_;
	eval { cdp($c, 'Browser.close') };
	my $deadline = time + 20;
	while (waitpid($c->{pid}, POSIX::WNOHANG()) == 0)
	{
		if (time > $deadline)
		{
			kill 'KILL', $c->{pid};
			waitpid($c->{pid}, 0);
			last;
		}
		sleep 0.05;
	}
	delete $children{ $c->{pid} };
}

1;
