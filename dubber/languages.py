"""Language tags for the dub track: ISO 639-2 codes, and which of them each container keeps.

The tag is written as stream metadata by ffmpeg (``-metadata:s:a:0 language=...``), which
drops what a container cannot store without a word: mp4 stores any three lowercase letters
(5 bits each), so a two-letter or capitalised code is lost; QuickTime ``.mov`` stores only
the codes of its own (Macintosh) language table; Matroska stores any text. A code is
therefore checked before any work: one of ISO 639-2 (bibliographic or terminology form, or
the local-use range qaa-qtz), lowercase, and for ``.mov`` one that QuickTime keeps.

ISO_639_2 and ISO_639_1 come from the iso-codes package's iso_639-2.json (Debian iso-codes
4.15.0); MOV_CODES are the codes of ISO_639_2 that ffmpeg 7.0.2 (the pinned imageio-ffmpeg)
writes into a .mov and reads back.
"""

from __future__ import annotations

ISO_639_2 = frozenset("""
    aar abk ace ach ada ady afa afh afr ain aka akk alb ale alg alt amh ang anp apa ara
    arc arg arm arn arp art arw asm ast ath aus ava ave awa aym aze bad bai bak bal bam
    ban baq bas bat bej bel bem ben ber bho bih bik bin bis bla bnt bod bos bra bre btk
    bua bug bul bur byn cad cai car cat cau ceb cel ces cha chb che chg chi chk chm chn
    cho chp chr chu chv chy cmc cnr cop cor cos cpe cpf cpp cre crh crp csb cus cym cze
    dak dan dar day del den deu dgr din div doi dra dsb dua dum dut dyu dzo efi egy eka
    ell elx eng enm epo est eus ewe ewo fan fao fas fat fij fil fin fiu fon fra fre frm
    fro frr frs fry ful fur gaa gay gba gem geo ger gez gil gla gle glg glv gmh goh gon
    gor got grb grc gre grn gsw guj gwi hai hat hau haw heb her hil him hin hit hmn hmo
    hrv hsb hun hup hye iba ibo ice ido iii ijo iku ile ilo ina inc ind ine inh ipk ira
    iro isl ita jav jbo jpn jpr jrb kaa kab kac kal kam kan kar kas kat kau kaw kaz kbd
    kha khi khm kho kik kin kir kmb kok kom kon kor kos kpe krc krl kro kru kua kum kur
    kut lad lah lam lao lat lav lez lim lin lit lol loz ltz lua lub lug lui lun luo lus
    mac mad mag mah mai mak mal man mao map mar mas may mdf mdr men mga mic min mis mkd
    mkh mlg mlt mnc mni mno moh mon mos mri msa mul mun mus mwl mwr mya myn myv nah nai
    nap nau nav nbl nde ndo nds nep new nia nic niu nld nno nob nog non nor nqo nso nub
    nwc nya nym nyn nyo nzi oci oji ori orm osa oss ota oto paa pag pal pam pan pap pau
    peo per phi phn pli pol pon por pra pro pus que raj rap rar roa roh rom ron rum run
    rup rus sad sag sah sai sal sam san sas sat scn sco sel sem sga sgn shn sid sin sio
    sit sla slk slo slv sma sme smi smj smn smo sms sna snd snk sog som son sot spa sqi
    srd srn srp srr ssa ssw suk sun sus sux swa swe syc syr tah tai tam tat tel tem ter
    tet tgk tgl tha tib tig tir tiv tkl tlh tli tmh tog ton tpi tsi tsn tso tuk tum tup
    tur tut tvl twi tyv udm uga uig ukr umb und urd uzb vai ven vie vol vot wak wal war
    was wel wen wln wol xal xho yao yap yid yor ypk zap zbl zen zgh zha zho znd zul zun
    zxx zza
""".split()) | frozenset(f"q{a}{b}" for a in "abcdefghijklmnopqrst"
                         for b in "abcdefghijklmnopqrstuvwxyz")

# ISO 639-1 (two letters) -> its ISO 639-2 code, for the hint when one is given.
ISO_639_1 = dict(pair.split(":") for pair in """
    aa:aar ab:abk ae:ave af:afr ak:aka am:amh an:arg ar:ara as:asm av:ava ay:aym az:aze
    ba:bak be:bel bg:bul bh:bih bi:bis bm:bam bn:ben bo:bod br:bre bs:bos ca:cat ce:che
    ch:cha co:cos cr:cre cs:ces cu:chu cv:chv cy:cym da:dan de:deu dv:div dz:dzo ee:ewe
    el:ell en:eng eo:epo es:spa et:est eu:eus fa:fas ff:ful fi:fin fj:fij fo:fao fr:fra
    fy:fry ga:gle gd:gla gl:glg gn:grn gu:guj gv:glv ha:hau he:heb hi:hin ho:hmo hr:hrv
    ht:hat hu:hun hy:hye hz:her ia:ina id:ind ie:ile ig:ibo ii:iii ik:ipk io:ido is:isl
    it:ita iu:iku ja:jpn jv:jav ka:kat kg:kon ki:kik kj:kua kk:kaz kl:kal km:khm kn:kan
    ko:kor kr:kau ks:kas ku:kur kv:kom kw:cor ky:kir la:lat lb:ltz lg:lug li:lim ln:lin
    lo:lao lt:lit lu:lub lv:lav mg:mlg mh:mah mi:mri mk:mkd ml:mal mn:mon mr:mar ms:msa
    mt:mlt my:mya na:nau nb:nob nd:nde ne:nep ng:ndo nl:nld nn:nno no:nor nr:nbl nv:nav
    ny:nya oc:oci oj:oji om:orm or:ori os:oss pa:pan pi:pli pl:pol ps:pus pt:por qu:que
    rm:roh rn:run ro:ron ru:rus rw:kin sa:san sc:srd sd:snd se:sme sg:sag si:sin sk:slk
    sl:slv sm:smo sn:sna so:som sq:sqi sr:srp ss:ssw st:sot su:sun sv:swe sw:swa ta:tam
    te:tel tg:tgk th:tha ti:tir tk:tuk tl:tgl tn:tsn to:ton tr:tur ts:tso tt:tat tw:twi
    ty:tah ug:uig uk:ukr ur:urd uz:uzb ve:ven vi:vie vo:vol wa:wln wo:wol xh:xho yi:yid
    yo:yor za:zha zh:zho zu:zul
""".split())

MOV_CODES = frozenset("""
    alb amh ara arm asm aym aze baq bel ben bul bur cat ces chi dan dut dzo eng epo est
    fin fra geo ger gre grn guj heb hin hun ice ind ita jav jpn kan kas kaz khm kin kir
    kor kur lao lat lav lit mac mal mar may mlg mlt mon nep nor nya ori orm per pol por
    pus que ron run rus san sin slk slv smi snd som spa swa tam tat tel tgk tgl tha tib
    tir tuk tur uig ukr urd uzb vie wel yid
""".split())


def language_problem(code: str, container: str | None = None) -> str | None:
    """What is wrong with ``code`` as the dub track's language tag (None: nothing).

    Args:
        code: the tag as given ("" = untagged, always fine).
        container: the output's ffmpeg muxer name (mp4, mov, matroska), when known.
    """
    if not code:
        return None
    if code not in ISO_639_2:
        low = code.lower()
        if low in ISO_639_2:
            return f"{code!r} must be lowercase: {low}"
        if low in ISO_639_1:
            return f"{code!r} is an ISO 639-1 code: use its ISO 639-2 code {ISO_639_1[low]}"
        return f"{code!r} is not an ISO 639-2 language code (hin, fra, zho, ...)"
    if container == "mov" and code not in MOV_CODES and code != "und":
        return f"{code!r} cannot be stored in a .mov (QuickTime's own language table): " \
               "use .mp4 or .mkv"
    return None
