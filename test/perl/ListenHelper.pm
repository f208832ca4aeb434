#-------------------------------------------------------------------------
#
# ListenHelper.pm
#	  Shared code of the LISTEN and delivery TAP tests (030_listen.pl,
#	  040_delivery.pl): a node with the extension preloaded, the
#	  datastreams-listen client run in the background with its output in a
#	  file, and the comparison of that output with the frames table.
#
# Loaded with "use ListenHelper;" (test/perl is on prove's include path); not a test.
#
#-------------------------------------------------------------------------
package ListenHelper;

use strict;
use warnings;

use Exporter 'import';
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(new_ds_node listen_program start_client spawn_client spawn_listen stop_client
  client_frames frames_in_table wait_until check_delivery);

my %children;					# pid => description, for the END cleanup

# A test killed by a signal (a runner's timeout) still runs the END blocks:
# no client is left behind, and the node is stopped.
$SIG{$_} //= sub { exit 1 } for qw(TERM INT HUP);

# A started node with datastreams preloaded and created in db postgres;
# %init goes to PostgreSQL::Test::Cluster's init (e.g. allows_streaming).
sub new_ds_node
{
	my ($name, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init(%init);
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'datastreams'
timezone = 'UTC'
max_connections = 40
log_min_messages = warning
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION datastreams');
	return $node;
}

# The installed client: PATH first, then pg_config --bindir.
sub listen_program
{
	for my $dir (split /:/, $ENV{PATH} // '')
	{
		return "$dir/datastreams-listen" if -x "$dir/datastreams-listen";
	}
	my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
	my $bindir = `$pg_config --bindir 2>/dev/null`;
	chomp $bindir;
	return "$bindir/datastreams-listen"
	  if $bindir ne '' && -x "$bindir/datastreams-listen";
	BAIL_OUT('datastreams-listen is not installed (make install)');
}

# Start datastreams-listen for $role on $node; stdout to $out, stderr to
# $err (both appended to).  Returns the pid.
sub start_client
{
	my ($node, $role, $out, $err, @args) = @_;
	return spawn_client($node->connstr('postgres') . " user=$role",
		$out, $err, @args);
}

# The same with any connection string (several hosts, for instance).
sub spawn_client
{
	my ($conninfo, $out, $err, @args) = @_;
	return spawn_listen($out, $err, @args, $conninfo);
}

# datastreams-listen with exactly these arguments (--proxy, for instance).
sub spawn_listen
{
	my ($out, $err, @args) = @_;
	my @cmd = (listen_program(), @args);

	note "starting: @cmd > $out";
	my $pid = fork;
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null') or POSIX::_exit(127);
		open(STDOUT, '>>', $out) or POSIX::_exit(127);
		open(STDERR, '>>', $err) or POSIX::_exit(127);
		exec { $cmd[0] } @cmd;
		POSIX::_exit(127);
	}
	$children{$pid} = "@cmd";
	return $pid;
}

# Send $signal to the client and reap it; returns its wait status.
sub stop_client
{
	my ($pid, $signal) = @_;

	kill $signal, $pid;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (waitpid($pid, POSIX::WNOHANG()) == 0)
	{
		if (time > $deadline)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
			delete $children{$pid};
			return -1;
		}
		sleep 0.05;
	}
	my $status = $?;
	delete $children{$pid};
	return $status;
}

END
{
	# waitpid sets $?, which is the test's exit status here
	local $?;
	kill 'KILL', $_ for keys %children;
	waitpid($_, 0) for keys %children;
}

# The complete lines of a client's output file, each as
# { line => text, frame => decoded JSON }.  A last line without its newline
# (a client killed while writing) was not delivered and is left out.
sub client_frames
{
	my ($file) = @_;
	my @frames;

	return () unless -e $file;
	open(my $fh, '<', $file) or die "could not open $file: $!";
	local $/;
	my $text = <$fh>;
	close $fh;
	$text =~ s/[^\n]*\z//;
	for my $line (split /\n/, $text)
	{
		my $frame = eval { decode_json($line) };
		push @frames, { line => $line, frame => $frame };
	}
	return @frames;
}

# row_to_json text of every frame of $stream, in sequence order, read by a
# superuser (no row-level security) with the node's time zone.
sub frames_in_table
{
	my ($node, $stream) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT row_to_json(f) FROM datastreams.frames AS f"
		  . " WHERE f.stream_id = '$stream' ORDER BY f.sequence");
	return $out eq '' ? () : split(/\n/, $out);
}

# Poll $cond every 0.1 s until it is true or $timeout seconds have passed.
sub wait_until
{
	my ($cond, $timeout) = @_;
	my $deadline = time + ($timeout // $PostgreSQL::Test::Utils::timeout_default);

	while (time < $deadline)
	{
		return 1 if $cond->();
		sleep 0.1;
	}
	return $cond->();
}

# The delivery contract for one stream: the client lines (in output order)
# are exactly the committed frames, each once, in ascending sequence order;
# each line is the frame's row_to_json() with "sequence_text", the same
# digits as "sequence", right after it.
sub check_delivery
{
	my ($label, $lines, $expected) = @_;
	my (%seen_id, @seq, @bare);
	my ($dups, $undecodable, $no_text) = (0, 0, 0);

	for my $l (@$lines)
	{
		my $bare = $l;
		$no_text++
		  unless $bare =~ s/("sequence":(\d+)),"sequence_text":"\2"/$1/;
		push @bare, $bare;
		my $f = eval { decode_json($l) };
		if (!defined $f)
		{
			$undecodable++;
			next;
		}
		$dups++ if $seen_id{ $f->{id} }++;
		push @seq, $f->{sequence};
	}
	my $ascending = 1;
	for my $i (1 .. $#seq)
	{
		$ascending = 0 if $seq[$i] <= $seq[ $i - 1 ];
	}
	is($undecodable, 0, "$label: every output line is a JSON object");
	is($no_text, 0,
		"$label: every line has sequence_text, the digits of sequence, after it");
	is($dups, 0, "$label: no frame printed twice");
	ok($ascending, "$label: sequences strictly ascending");
	is(scalar(@$lines), scalar(@$expected),
		"$label: as many frames printed as committed");
	is_deeply(\@bare, $expected,
		"$label: output equals the committed frames (row_to_json, sequence order)");
}

1;
