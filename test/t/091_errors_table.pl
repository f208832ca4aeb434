#-------------------------------------------------------------------------
#
# 091_errors_table.pl
#	  README.md's Errors table lists every SQLSTATE the extension's API
#	  raises, each once.
#
# The codes raised are read from the sources: ereport()/elog() in src/*.c
# and RAISE in the extension's SQL scripts (sql/datastreams--*.sql and the
# pieces of the 1.2 upgrade, sql/1.1--1.2/*.sql).  Names are mapped to
# SQLSTATEs with PostgreSQL's errcodes.txt (pg_config --sharedir).  Codes
# that no user of the API can get are ignored only through %internal below,
# each with its reason.  The table may also list codes that PostgreSQL
# itself raises for bad arguments (they are not in our sources).
#
# No server needed.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use FindBin;
use Test::More;

my $root = "$FindBin::RealBin/../..";

# Codes raised in the sources but not part of the API, and why.  Keys are
# ERRCODE_ macro names, SQLSTATEs, or "file:what" for one file.
my %internal = (
	# The trigger functions are not executable by PUBLIC and are attached
	# by the extension only; these guards fire only if a superuser attaches
	# them elsewhere or calls them by hand.
	'ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED' => 'trigger protocol guards',
	# elog(ERROR) is for "cannot happen" (SPI failures, a column of the
	# extension's own tables missing), per the house style.
	'XX000' => 'elog: cannot happen',
	# Structured log lines at the level a superuser chooses
	# (datastreams.log_stream_changes, datastreams.log_rejected_frames);
	# they describe accepted or rejected work, they are not errors.
	'src/logs.c:variable level' => 'log lines',
	'src/metrics.c:variable level' => 'log line: stream changes not logged',
);

#-------------------------------------------------------------------------
# PostgreSQL's error codes
#-------------------------------------------------------------------------
my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
my $sharedir = `$pg_config --sharedir`;
chomp $sharedir;
my $errcodes_txt = "$sharedir/errcodes.txt";
ok(-r $errcodes_txt, "PostgreSQL's errcodes.txt is readable ($errcodes_txt)")
  or BAIL_OUT("no errcodes.txt: set PG_CONFIG");

my (%state_of_macro, %state_of_condition, %condition_of_state);
open my $fh, '<', $errcodes_txt or die "$errcodes_txt: $!";
while (<$fh>)
{
	next unless /^([0-9A-Z]{5})\s+[EWS]\s+(ERRCODE_\w+)(?:\s+(\w+))?/;
	$state_of_macro{$2} = $1;
	if (defined $3)
	{
		$state_of_condition{$3} = $1;
		$condition_of_state{$1} //= $3;
	}
}
close $fh;

#-------------------------------------------------------------------------
# What the sources raise: %raised{sqlstate} = [ "file:line", ... ]
#-------------------------------------------------------------------------
my %raised;
my @problems;

sub slurp
{
	my ($path) = @_;
	open my $f, '<', $path or die "$path: $!";
	local $/;
	return scalar <$f>;
}

sub line_at
{
	my ($text, $offset) = @_;
	return 1 + (substr($text, 0, $offset) =~ tr/\n//);
}

# Blank out comments and string literals (keeping newlines and length), so
# that parentheses and semicolons inside them do not count.
sub blank_c
{
	my ($text) = @_;
	$text =~ s{(/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')}
			  {my $m = $1; $m =~ s/[^\n]/ /g; $m}gse;
	return $text;
}

sub note_raise
{
	my ($code, $where) = @_;
	my $state;
	if ($code =~ /^ERRCODE_/)
	{
		$state = $state_of_macro{$code};
	}
	elsif ($code =~ /^[0-9A-Z]{5}$/)
	{
		$state = $code;
	}
	else
	{
		$state = $state_of_condition{ lc $code };
	}
	if (!defined $state || !exists $condition_of_state{$state})
	{
		push @problems, "$where: unknown error code $code";
		return;
	}
	return if exists $internal{$code} || exists $internal{$state};
	push @{ $raised{$state} }, $where;
}

my %client_levels = map { $_ => 1 } qw(ERROR FATAL PANIC WARNING);
my %server_levels = map { $_ => 1 }
  qw(DEBUG1 DEBUG2 DEBUG3 DEBUG4 DEBUG5 LOG LOG_SERVER_ONLY COMMERROR INFO NOTICE);

for my $file (sort glob("$root/src/*.c"))
{
	(my $rel = $file) =~ s{^\Q$root\E/}{};
	my $text = blank_c(slurp($file));
	my $paren = qr/(\((?:[^()]++|(?-1))*\))/;

	# errcode() anywhere (also in wrappers such as ds_reject_frame()),
	# except inside ereport()s at levels that only reach the server log
	my @server_only;
	while ($text =~ /\bereport\s*$paren/g)
	{
		my ($args, $at, $end) = ($1, $-[0], $+[0]);
		my $where = "$rel:" . line_at($text, $at);
		my ($level) = $args =~ /^\(\s*(\w+)/;
		if ($server_levels{$level})
		{
			push @server_only, [ $at, $end ];
			next;
		}
		next if $args =~ /\berrcode\s*\(/;
		if (!$client_levels{$level})
		{
			push @problems, "$where: ereport($level, ...) without errcode"
			  unless exists $internal{"$rel:variable level"};
		}
		elsif ($level eq 'WARNING')
		{
			note_raise('01000', $where);
		}
		else
		{
			push @problems, "$where: ereport($level, ...) without errcode (XX000)";
		}
	}
	while ($text =~ /\berrcode\s*\(\s*([^)\s]*)\s*\)/g)
	{
		my ($c, $at) = ($1, $-[0]);
		my $where = "$rel:" . line_at($text, $at);
		next if grep { $at >= $_->[0] && $at < $_->[1] } @server_only;
		if ($c !~ /^ERRCODE_\w+$/)
		{
			push @problems, "$where: errcode($c) is not a constant: list its codes"
			  unless exists $internal{"$rel:errcode($c)"};
			next;
		}
		note_raise($c, $where);
	}
	while ($text =~ /\belog\s*\(\s*(ERROR|FATAL|PANIC|WARNING)\b/g)
	{
		note_raise($1 eq 'WARNING' ? '01000' : 'XX000', "$rel:" . line_at($text, $-[0]));
	}
}

# RAISE statements in PL/pgSQL bodies.  Reads one statement up to its
# semicolon outside quotes; only ERRCODE's value and SQLSTATE '...' need
# their string contents.
my @sql_files = grep { !m{/datastreams--1\.1--1\.2\.sql$} }
  (glob("$root/sql/datastreams--*.sql"), glob("$root/sql/1.1--1.2/*.sql"));
for my $file (sort @sql_files)
{
	(my $rel = $file) =~ s{^\Q$root\E/}{};
	my $text = slurp($file);
	$text =~ s{(--[^\n]*)}{my $m = $1; $m =~ s/[^\n]/ /g; $m}ge;
	while ($text =~ /\bRAISE\b((?:'(?:''|[^'])*'|[^;'])*);/gi)
	{
		my ($stmt, $where) = ($1, "$rel:" . line_at($text, $-[0]));
		next if $stmt =~ /^\s*$/;	# RAISE; re-raises
		my $level = 'EXCEPTION';
		$level = uc $1 if $stmt =~ s/^\s*(DEBUG|LOG|INFO|NOTICE|WARNING|EXCEPTION)\b//i;
		next if $level ne 'EXCEPTION' && $level ne 'WARNING';
		my $code;
		if ($stmt =~ /\bERRCODE\s*=\s*'([^']*)'/i)
		{
			$code = $1;
		}
		elsif ($stmt =~ /^\s*SQLSTATE\s+'([^']*)'/i)
		{
			$code = $1;
		}
		elsif ($stmt =~ /^\s*([a-z_]+)\b/i && uc($1) ne 'USING')
		{
			$code = $1;
		}
		elsif ($stmt =~ /\bERRCODE\s*=/i)
		{
			push @problems, "$where: ERRCODE is not a literal: list its codes";
			next;
		}
		else
		{
			$code = $level eq 'EXCEPTION' ? 'P0001' : '01000';
		}
		note_raise($code, $where);
	}
}

ok(scalar(keys %raised) > 5, 'the sources raise SQLSTATEs (the scan works)')
  or diag 'found: ' . join(' ', sort keys %raised);

#-------------------------------------------------------------------------
# README.md's Errors table
#-------------------------------------------------------------------------
my $readme = slurp("$root/README.md");
my ($section) = $readme =~ /^### Errors\n(.*?)(?=^#)/ms;
ok(defined $section, 'README.md has a section "### Errors"')
  or BAIL_OUT('no Errors section');
$section //= '';

my %listed;
my $rows = 0;
for my $row (grep { /^\|/ } split /\n/, $section)
{
	my @cells = map { s/^\s+|\s+$//gr } split /\|/, $row;
	shift @cells;
	next if $cells[0] =~ /^(SQLSTATE|-+)$/;
	$rows++;
	if ($cells[0] !~ /^`([0-9A-Z]{5})`$/)
	{
		push @problems, "README Errors row '$cells[0]': the first cell must be one SQLSTATE in backticks";
		next;
	}
	my $state = $1;
	push @problems, "README Errors: $state is listed twice" if $listed{$state}++;
	if (!exists $condition_of_state{$state})
	{
		push @problems, "README Errors: $state is not a PostgreSQL SQLSTATE";
	}
	elsif (($cells[1] // '') ne "`$condition_of_state{$state}`")
	{
		push @problems,
		  "README Errors: $state is named '$cells[1]', PostgreSQL calls it `$condition_of_state{$state}`";
	}
}
ok($rows > 5, "the Errors table has rows ($rows)");

for my $state (sort keys %raised)
{
	next if $listed{$state};
	push @problems, "README Errors: $state ($condition_of_state{$state}) is missing; raised at "
	  . join(', ', @{ $raised{$state} });
}

is(join("\n", @problems), '', 'every SQLSTATE raised is listed once, under its PostgreSQL name');
note 'raised: ' . join(' ', sort keys %raised);

done_testing();
