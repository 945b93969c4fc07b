/*
   A realistic rule set for process-memory scanning benchmarks (bench_yara_processes.py): a few
   dozen rules in the style of public memory-hunting rules (credential dumpers, post-exploitation
   frameworks, miners, web shells, reverse shells, loaders), with text, wide, nocase, hex and
   regular-expression strings. Written for the benchmark: it should match nothing or little on a
   clean machine. The strings are split or encoded where a rule would otherwise match its own
   source text held in a scanner's memory.
*/

rule Cred_Dumper_Commands : credentials
{
    meta:
        description = "Command names of a well-known Windows credential dumper"
    strings:
        $a = "sekurlsa::logonpasswords" ascii wide nocase
        $b = "lsadump::sam" ascii wide nocase
        $c = "privilege::debug" ascii wide nocase
        $d = "kerberos::golden" ascii wide nocase
    condition:
        2 of them
}

rule Cred_Dumper_Banner : credentials
{
    strings:
        $a = { 67 65 6E 74 69 6C 6B 69 77 69 }
        $b = "A La Vie, A L'Amour" ascii wide
    condition:
        any of them
}

rule Beacon_Config_XOR69 : c2
{
    strings:
        $a = { 69 68 69 68 69 6B ?? ?? 69 6B 69 68 69 6B ?? ?? 69 69 69 6A }
        $b = { 2E 2F 2E 2F 2E 2C ?? ?? 2E 2C 2E 2F 2E 2C ?? ?? 2E 2E 2E 2D }
    condition:
        any of them
}

rule Beacon_Sleep_Mask : c2
{
    strings:
        $a = { 4C 8B 53 08 45 8B 0A 45 8B 5A 04 4D 8D 52 08 45 85 C9 75 05 45 85 DB 74 33 45 3B CB 73 E6 49 8B F9 4C 8B 03 }
        $b = { 8B 46 04 8B 08 8B 50 04 83 C0 08 89 55 08 89 45 0C 85 C9 75 04 85 D2 74 23 3B CA 73 E6 8B 06 8D 3C 08 33 D2 }
    condition:
        any of them
}

rule Reflective_Loader_Export : loader
{
    strings:
        $a = "ReflectiveLoader" ascii
        $b = "_ReflectiveLoader@" ascii
        $c = { 4D 5A 41 52 55 48 89 E5 48 83 EC 20 48 83 E4 F0 E8 00 00 00 00 5B }
    condition:
        any of them
}

rule Meterpreter_Strings : c2
{
    strings:
        $a = "stdapi_sys_process_execute" ascii
        $b = "priv_elevate_getsystem" ascii
        $c = "core_channel_open" ascii
        $d = "metsrv.dll" ascii nocase
    condition:
        2 of them
}

rule Sliver_Implant : c2
{
    strings:
        $a = "sliverpb" ascii
        $b = "bishopfox/sliver" ascii
        $c = { 81 F9 ?? ?? ?? ?? 0F 8F ?? ?? ?? ?? 81 F9 ?? ?? ?? ?? 0F 84 ?? ?? ?? ?? 81 F9 ?? ?? ?? ?? 0F 8F }
    condition:
        ($a and $b) or $c
}

rule Miner_Pool_URL : miner
{
    strings:
        $pool = /stratum\+(tcp|ssl|tls):\/\/[a-z0-9.\-]{4,64}:[0-9]{2,5}/ nocase
    condition:
        $pool
}

rule Miner_Config_Keys : miner
{
    strings:
        $a = "\"donate-level\"" ascii
        $b = "\"randomx\"" ascii
        $c = "cryptonight" ascii nocase
        $d = "xmrig" ascii nocase fullword
    condition:
        3 of them
}

rule Reverse_Shell_DevTcp : shell
{
    strings:
        $a = /\/dev\/tcp\/[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\/[0-9]{2,5}/
    condition:
        $a
}

rule Reverse_Shell_Python : shell
{
    strings:
        $a = /socket\.socket\(socket\.AF_INET,\s*socket\.SOCK_STREAM\)[^\n]{0,120}subprocess\.call\(\[.\/bin\/(ba)?sh.,.-i.\]\)/
    condition:
        $a
}

rule Reverse_Shell_Mkfifo : shell
{
    strings:
        $a = /mkfifo \/tmp\/[a-z0-9]{1,16}; ?(cat|nc) /
        $b = /rm -f \/tmp\/[a-z0-9]{1,16};mkfifo/
    condition:
        any of them
}

rule Webshell_PHP_Eval : webshell
{
    strings:
        $a = /eval\s*\(\s*base64_decode\s*\(\s*\$_(POST|GET|REQUEST|COOKIE)\[/ nocase
        $b = /assert\s*\(\s*\$_(POST|GET|REQUEST)\[/ nocase
    condition:
        any of them
}

rule Webshell_JSP_Runtime : webshell
{
    strings:
        $a = /Runtime\.getRuntime\(\)\.exec\(request\.getParameter\(/
    condition:
        $a
}

rule Webshell_China_Chopper : webshell
{
    strings:
        $a = /<%@\s*Page\s+Language="Jscript"%><%eval\(Request\.Item\[/ nocase
        $b = { 3C 25 65 76 61 6C 20 72 65 71 75 65 73 74 28 }
    condition:
        any of them
}

rule Linux_Rootkit_Names : rootkit
{
    strings:
        $a = "diamorphine_hide" ascii
        $b = "reptile_shell" ascii
        $c = "hide_tcp4_port" ascii
        $d = "/proc/ld.so.preload_hidden" ascii
    condition:
        any of them
}

rule LD_Preload_Hook_Lib : rootkit
{
    strings:
        $a = "libprocesshider" ascii
        $b = { 48 8B 3D ?? ?? ?? ?? 48 8D 35 ?? ?? ?? ?? E8 ?? ?? ?? ?? 48 85 C0 74 ?? 48 89 C7 E8 ?? ?? ?? ?? 85 C0 0F 85 ?? ?? ?? ?? 48 8D 3D ?? ?? ?? ?? }
    condition:
        $a or $b
}

rule Tsunami_IRC_Bot : bot
{
    strings:
        $a = "NOTICE %s :Kaiten" ascii
        $b = "PRIVMSG %s :>bot +std" ascii
        $c = "KILLALL" ascii fullword
        $d = "GETSPOOFS" ascii fullword
    condition:
        2 of them
}

rule Mirai_Table : bot
{
    strings:
        $a = { 55 4B 50 31 32 51 4D 57 55 47 }
        $b = "/bin/busybox MIRAI" ascii
        $c = "POST /cdn-cgi/" ascii
    condition:
        any of them
}

rule Gafgyt_Commands : bot
{
    strings:
        $a = "HTTPFLOOD" ascii fullword
        $b = "UDPRAW" ascii fullword
        $c = "LOLNOGTFO" ascii fullword
    condition:
        2 of them
}

rule Cobalt_Named_Pipe : c2
{
    strings:
        $a = /\\\\\.\\pipe\\(MSSE|postex|status|msagent)_[0-9a-f]{2,8}/ ascii wide
    condition:
        $a
}

rule PowerShell_Download_Cradle : loader
{
    strings:
        $a = /IEX\s*\(\s*New-Object\s+Net\.WebClient\)\.DownloadString\(/ ascii wide nocase
        $b = /-enc(odedcommand)?\s+[A-Za-z0-9+\/]{200,}/ ascii wide nocase
    condition:
        any of them
}

rule Shellcode_x64_Stager : loader
{
    strings:
        $a = { FC 48 83 E4 F0 E8 C0 00 00 00 41 51 41 50 52 51 56 48 31 D2 65 48 8B 52 60 }
        $b = { FC E8 82 00 00 00 60 89 E5 31 C0 64 8B 50 30 8B 52 0C 8B 52 14 }
    condition:
        any of them
}

rule Shellcode_Linux_Bind : loader
{
    strings:
        $a = { 6A 29 58 99 6A 02 5F 6A 01 5E 0F 05 48 97 52 C7 04 24 02 00 ?? ?? 48 89 E6 6A 10 5A 6A 31 58 0F 05 }
        $b = { 31 DB F7 E3 53 43 53 6A 02 89 E1 B0 66 CD 80 }
    condition:
        any of them
}

rule Packed_UPX_In_Memory : packer
{
    strings:
        $a = { 55 50 58 30 00 00 00 00 ?? ?? ?? ?? ?? ?? ?? ?? ?? ?? ?? ?? 00 00 00 00 00 00 00 00 00 00 00 00 80 00 00 E0 55 50 58 31 }
        $b = "$Info: This file is packed with the UPX executable packer" ascii
    condition:
        $a or $b
}

rule SSH_Key_Stealer : credentials
{
    strings:
        $a = /-----BEGIN OPENSSH PRIVATE KEY-----[A-Za-z0-9+\/=\r\n]{64}[^-]{0,4000}curl -X POST/
        $b = "authorized_keys_backdoor" ascii
    condition:
        any of them
}

rule AWS_Key_Exfil : credentials
{
    strings:
        $a = /AKIA[0-9A-Z]{16}[^\n]{0,40}aws_secret_access_key\s*=\s*[A-Za-z0-9\/+]{40}[^\n]{0,40}https?:\/\//
    condition:
        $a
}

rule Kinsing_Strings : miner
{
    strings:
        $a = "kinsing" ascii fullword
        $b = "kdevtmpfsi" ascii
        $c = "/tmp/.ICEd-unix" ascii
    condition:
        2 of them
}

rule TeamTNT_Strings : miner
{
    strings:
        $a = "TeamTNT" ascii wide
        $b = "hilde.sh" ascii
        $c = "/tmp/.x/tshd" ascii
    condition:
        any of them
}

rule Chisel_Tunnel : tunnel
{
    strings:
        $a = "jpillora/chisel" ascii
        $b = "chisel-v3" ascii
    condition:
        any of them
}

rule Ngrok_Agent : tunnel
{
    strings:
        $a = "tunnel.us.ngrok.com" ascii
        $b = /ngrok-agent\/[0-9]\.[0-9]+/ ascii
    condition:
        any of them
}

rule Suspicious_XOR_Loop : loader
{
    strings:
        $a = { 8A 04 0? 34 ?? 88 04 0? 4? FF C? 4? 3B C? 7? F? }
    condition:
        #a > 20
}

rule Base64_PE_Header : loader
{
    strings:
        $a = "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAA4fug4AtAnNIbgBTM0hVGhpcyBwcm9ncmFt" ascii wide
    condition:
        $a
}
